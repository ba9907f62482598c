#!/usr/bin/env bash
# The cluster (issue #17): the test itself starts a throwaway redis-server and three nodes on
# loopback (ports TEST_PORT..+2, media TEST_RTC_PORT + 0/10/20, Redis TEST_REDIS_PORT), kills and
# restarts them, and stops them all at the end.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
command -v redis-server >/dev/null || { echo "redis-server missing: make deps-system installs it" >&2; exit 1; }
ulimit -l unlimited 2>/dev/null || true
cd "$root/tests/browser"
TEST_PORT=${TEST_PORT:-18011} TEST_RTC_PORT=${TEST_RTC_PORT:-31700} TEST_REDIS_PORT=${TEST_REDIS_PORT:-6391} \
  exec node --test --test-concurrency=1 cluster.suite.mjs
