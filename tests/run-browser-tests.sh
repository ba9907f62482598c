#!/usr/bin/env bash
# The real-browser suites (tests/browser, node:test) against the release server on test ports.
set -euo pipefail
exec "$(dirname "$0")/run-with-server.sh" sh -c 'cd "$(dirname "$0")/browser" && npm test' "$(cd "$(dirname "$0")" && pwd)/x"
