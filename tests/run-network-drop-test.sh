#!/usr/bin/env bash
# A subscriber whose network drops for 5 s: its Chromium runs in a network namespace joined to
# this host by a veth pair; the test takes the host side of the link down and up again.
# Needs root (ip netns). Addresses are private to this machine's namespaces (10.231.0.0/24).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ns=sfu-drop-$$
host_if=vh-drop-$$
host_if=${host_if:0:15}
cleanup() { ip netns del "$ns" 2>/dev/null || true; ip link del "$host_if" 2>/dev/null || true; }
trap cleanup EXIT
ip netns add "$ns"
ip link add "$host_if" type veth peer name vn-drop
ip link set vn-drop netns "$ns"
ip addr add 10.231.0.1/24 dev "$host_if"
ip link set "$host_if" up
ip netns exec "$ns" ip addr add 10.231.0.2/24 dev vn-drop
ip netns exec "$ns" ip link set vn-drop up
ip netns exec "$ns" ip link set lo up
cd "$here/browser"
SFU_NETNS=$ns SFU_NETNS_HOST_IF=$host_if SFU_ANNOUNCED_IP=10.231.0.1 \
  TEST_LISTEN_IP=10.231.0.1 TEST_PORT=${TEST_PORT:-18002} TEST_RTC_PORT=${TEST_RTC_PORT:-31200} \
  ../run-with-server.sh node --test network-drop.test.mjs
