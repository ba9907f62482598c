#!/usr/bin/env bash
# ICE-TCP with real Chromium: UDP to the server's media port is dropped on loopback (iptables,
# needs root), so the browsers can only reach the server over its passive TCP candidate. The
# rule is removed on exit, whatever happens.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
port=${TEST_PORT:-18006}
rtc_port=${TEST_RTC_PORT:-31600}
command -v iptables >/dev/null || { echo "iptables is missing: apt-get install -y iptables (make deps-system does, as root)" >&2; exit 1; }
rule=(INPUT -i lo -p udp --dport "$rtc_port" -j DROP)
cleanup() { while iptables -D "${rule[@]}" 2>/dev/null; do :; done; }
trap cleanup EXIT
iptables -I "${rule[@]}"
cd "$here/browser"
TEST_UDP_BLOCKED=1 TEST_PORT=$port TEST_RTC_PORT=$rtc_port \
  ../run-with-server.sh node --test ice-tcp.test.mjs
