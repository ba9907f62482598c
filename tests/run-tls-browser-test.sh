#!/usr/bin/env bash
# The web app over HTTPS and its room over WSS (built-in TLS, --tls-cert/--tls-key): a server on its
# own ports with a self-signed certificate made here, and Chromium told to accept it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${TEST_OUTPUT:-$root/test-output}/tls
mkdir -p "$out"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$out/key.pem" -out "$out/cert.pem" 2>/dev/null
chmod 600 "$out/key.pem"
cd "$root/tests/browser"
TEST_TLS_CERT="$out/cert.pem" TEST_TLS_KEY="$out/key.pem" TEST_OUTPUT="$out" \
  TEST_PORT=${TEST_PORT:-18003} TEST_RTC_PORT=${TEST_RTC_PORT:-31300} \
  exec ../run-with-server.sh node --test tls.test.mjs
