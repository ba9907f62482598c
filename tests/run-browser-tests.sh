#!/usr/bin/env bash
# The real-browser suites (tests/browser, node:test) against the release server on test ports.
set -euo pipefail
cd "$(dirname "$0")/browser"
exec ../run-with-server.sh npm test
