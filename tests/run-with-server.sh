#!/usr/bin/env bash
# Runs a command with the release server started on test ports (SFU_URL exported), then stops it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
port=${TEST_PORT:-18000}
listen_ip=${TEST_LISTEN_IP:-127.0.0.1}
rtc_port=${TEST_RTC_PORT:-31000}
out=${TEST_OUTPUT:-$root/test-output}
mkdir -p "$out"
ulimit -l unlimited 2>/dev/null || true
# TEST_TLS_CERT + TEST_TLS_KEY (PEM): the server speaks HTTPS/WSS (curl -k: a test certificate).
scheme=http tls_args=()
if [ -n "${TEST_TLS_CERT:-}" ]; then
  scheme=https tls_args=(--tls-cert "$TEST_TLS_CERT" --tls-key "$TEST_TLS_KEY")
fi
if curl -kfsS "$scheme://$listen_ip:$port/healthz" >/dev/null 2>&1; then
  echo "port $port is already serving: stop that server or set TEST_PORT / TEST_RTC_PORT" >&2
  exit 1
fi
"$root/target/release/sfu" --listen "$listen_ip:$port" --rtc-port "$rtc_port" \
  --web-root "$root/web/out" --hls-root "$out/hls" ${tls_args[@]+"${tls_args[@]}"} >"$out/server.log" 2>&1 &
server=$!
# SIGTERM drains (rooms close as the test's peers go); a second one after 5 s stops it at once.
stop_server() {
  kill "$server" 2>/dev/null || return 0
  for _ in $(seq 1 50); do kill -0 "$server" 2>/dev/null || break; sleep 0.1; done
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
}
trap stop_server EXIT
for _ in $(seq 1 100); do
  curl -kfsS "$scheme://$listen_ip:$port/healthz" >/dev/null 2>&1 && break
  kill -0 $server 2>/dev/null || { echo "server exited; log:"; cat "$out/server.log"; exit 1; }
  sleep 0.1
done
export SFU_URL="$scheme://$listen_ip:$port" TEST_OUTPUT="$out"
status=0
"$@" || status=$?
if [ $status -ne 0 ]; then echo "--- server log (tail)"; tail -n 50 "$out/server.log"; fi
exit $status
