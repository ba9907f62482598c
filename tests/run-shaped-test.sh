#!/usr/bin/env bash
# Bandwidth-adaptive delivery: a subscriber whose downlink is shaped (tc tbf on the host side of a
# veth pair into a network namespace where its Chromium runs). Runs shaped.test.mjs against our
# release server and, in the same run, the reference SFU (mediasoup 3.12.16, figures only).
# Needs root (ip netns, tc). Addresses are private to this machine's namespaces (10.232.0.0/24).
#   TEST_PORT / TEST_RTC_PORT   our server (default 18007 / 31800)
#   REF_PORT / REF_RTC_PORT     the reference (default 8100, or 18107 when 8100 is taken / 31900)
#   REF_SFU_DIR                 the reference's folder (default ../shared/reference-sfu beside the checkout)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ "$(id -u)" -eq 0 ] || { echo "run-shaped-test.sh needs root (ip netns, tc)" >&2; exit 1; }
host_ip=10.232.0.1 ns_ip=10.232.0.2
ns=sfu-shaped-$$
host_if=vh-shp-$$
host_if=${host_if:0:15}
ns_if=vn-shp
out=${TEST_OUTPUT:-$here/../test-output}
mkdir -p "$out"
ref_pid=
cleanup() {
  if [ -n "$ref_pid" ]; then
    kill -- -"$ref_pid" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$ref_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 -- -"$ref_pid" 2>/dev/null || true
  fi
  ip netns del "$ns" 2>/dev/null || true
  ip link del "$host_if" 2>/dev/null || true
}
trap cleanup EXIT
ip netns add "$ns"
ip link add "$host_if" type veth peer name "$ns_if"
ip link set "$ns_if" netns "$ns"
ip addr add "$host_ip/24" dev "$host_if"
ip link set "$host_if" up
ip netns exec "$ns" ip addr add "$ns_ip/24" dev "$ns_if"
ip netns exec "$ns" ip link set "$ns_if" up
ip netns exec "$ns" ip link set lo up

# The reference listens (HTTP on every address, media on ANNOUNCED_IP) where the namespace reaches it.
ref_dir=${REF_SFU_DIR:-$(cd "$here/../.." && pwd)/shared/reference-sfu}
ref_url= ref_missing=
if [ ! -x "$ref_dir/start.sh" ]; then
  ref_missing="no $ref_dir/start.sh"
else
  ref_port=${REF_PORT:-}
  if [ -z "$ref_port" ]; then
    ref_port=8100
    if curl -fsS "http://127.0.0.1:8100/healthz" >/dev/null 2>&1; then ref_port=18107; fi
  fi
  if curl -fsS "http://$host_ip:$ref_port/healthz" >/dev/null 2>&1; then
    ref_missing="port $ref_port is already serving (set REF_PORT)"
  else
    # setsid: its own process group, so nothing of it outlives this script's cleanup.
    PORT=$ref_port ANNOUNCED_IP=$host_ip RTC_PORT=${REF_RTC_PORT:-31900} WORKERS=1 \
      setsid "$ref_dir/start.sh" >"$out/reference-sfu.log" 2>&1 &
    ref_pid=$!
    # The first start builds mediasoup's worker (minutes); later ones are up within seconds.
    deadline=$(( $(date +%s) + ${REF_START_TIMEOUT:-420} ))
    until curl -fsS "http://$host_ip:$ref_port/healthz" >/dev/null 2>&1; do
      if ! kill -0 "$ref_pid" 2>/dev/null; then ref_missing="it exited (see $out/reference-sfu.log)"; ref_pid=; break; fi
      if [ "$(date +%s)" -gt "$deadline" ]; then ref_missing="not up within ${REF_START_TIMEOUT:-420} s"; break; fi
      sleep 0.2
    done
    [ -n "$ref_missing" ] || ref_url="http://$host_ip:$ref_port"
  fi
fi
[ -z "$ref_missing" ] || echo "reference SFU unavailable: $ref_missing (its part is skipped)"

cd "$here/browser"
SFU_NETNS=$ns SFU_NETNS_HOST_IF=$host_if SFU_SHAPED_HOST=$host_ip SFU_ANNOUNCED_IP=$host_ip \
  REF_SFU_URL=$ref_url REF_SFU_MISSING=$ref_missing \
  TEST_LISTEN_IP=$host_ip TEST_PORT=${TEST_PORT:-18007} TEST_RTC_PORT=${TEST_RTC_PORT:-31800} TEST_OUTPUT=$out \
  ../run-with-server.sh node --test --test-concurrency=1 shaped.test.mjs
