#!/usr/bin/env bash
# Signed room tokens through the web app (issue #13): a server with access on (SFU_AUTH_SECRET, a
# fresh random secret per run, which the test also uses to sign its tokens) on its own ports.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${TEST_OUTPUT:-$root/test-output}/tokens
mkdir -p "$out"
SFU_AUTH_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
export SFU_AUTH_SECRET
cd "$root/tests/browser"
TEST_OUTPUT="$out" TEST_PORT=${TEST_PORT:-18005} TEST_RTC_PORT=${TEST_RTC_PORT:-31500} \
  exec ../run-with-server.sh node --test tokens.test.mjs
