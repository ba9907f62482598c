# Two entry points (see README.md): `make run` and `make test`. Both install what they need.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PORT ?= 8000
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

WEB_SOURCES := $(shell find web/app web/components web/lib web/hooks web/public -type f 2>/dev/null) \
	web/package.json web/package-lock.json $(wildcard web/next.config.* web/tsconfig.json web/postcss.config.* web/tailwind.config.*)

.PHONY: run test build web deps-run deps-system deps-python deps-web deps-browser lint test-rust test-web test-browser bench bench-hls

## run: build everything and serve the app on http://localhost:$(PORT)
run: deps-run build
	@ulimit -l unlimited 2>/dev/null || true; \
	exec ./target/release/sfu --listen 0.0.0.0:$(PORT) --web-root web/out

## test: every test (Rust unit + integration, web lint/typecheck, real-browser tests)
test: deps-system deps-python lint test-rust test-web test-browser

build: web target/release/sfu

target/release/sfu: FORCE
	$(CARGO) build --release --workspace --bins

FORCE:

# FFmpeg (Debian) for the HLS pipeline.
deps-run:
	@if ! command -v ffmpeg >/dev/null; then \
	  if [ "$$(id -u)" != 0 ]; then echo "warning: no ffmpeg and not root: /watch (HLS) will not work until ffmpeg is installed" >&2; exit 0; fi; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -q >/dev/null && apt-get install -y -q ffmpeg >/dev/null; \
	fi

# System packages (Debian): Chromium and Firefox ESR for browser tests, FFmpeg for HLS.
deps-system:
	@if ! command -v chromium >/dev/null || ! command -v ffmpeg >/dev/null || ! command -v firefox-esr >/dev/null; then \
	  if [ "$$(id -u)" != 0 ]; then echo "need root to apt-get install chromium firefox-esr ffmpeg" >&2; exit 1; fi; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -q >/dev/null && apt-get install -y -q chromium firefox-esr ffmpeg >/dev/null; \
	fi
	@# coturn (turnserver) for the TURN relay browser test, openssl for the TLS one, iptables for
	@# ICE-TCP, redis-server for the cluster test.
	@if ! command -v turnserver >/dev/null || ! command -v openssl >/dev/null || ! command -v iptables >/dev/null || ! command -v redis-server >/dev/null; then \
	  if [ "$$(id -u)" != 0 ]; then echo "need root to apt-get install coturn openssl iptables redis-server" >&2; exit 1; fi; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -q >/dev/null && apt-get install -y -q coturn openssl iptables redis-server >/dev/null; \
	fi

# A real Prometheus text-format parser for the /metrics test (Python prometheus_client, in a
# virtualenv under target/ so nothing is installed system-wide).
deps-python: target/py/.installed
target/py/.installed:
	python3 -m venv target/py || { apt-get update -q >/dev/null && apt-get install -y -q python3-venv >/dev/null && python3 -m venv target/py; }
	target/py/bin/python3 -m pip install --quiet --disable-pip-version-check prometheus-client
	touch $@

deps-web: web/node_modules/.installed
web/node_modules/.installed: web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
	touch $@

web: web/out/index.html
web/out/index.html: web/node_modules/.installed $(WEB_SOURCES)
	cd web && npm run build
	touch $@

deps-browser: tests/browser/node_modules/.installed
tests/browser/node_modules/.installed: tests/browser/package.json tests/browser/package-lock.json
	cd tests/browser && npm ci --no-audit --no-fund --loglevel=error
	touch $@

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

test-rust:
	$(CARGO) test --release --workspace

test-web: deps-web
	cd web && npm run lint && npm run typecheck

test-browser: build deps-browser
	tests/run-browser-tests.sh
	@# NACK/RTX under loss: a second server that drops 5 % of forwarded RTP (fault injection, docs/config.md).
	cd tests/browser && SFU_FAULT_DROP_OUT_PERCENT=5 TEST_PORT=18001 TEST_RTC_PORT=31100 \
	  ../run-with-server.sh node --test --test-name-pattern='dropped' quality.test.mjs
	@# Rooms spanning two workers: every other peer of a room on the second worker.
	cd tests/browser && SFU_WORKERS=2 SFU_ROOM_SPILL_PEERS=1 TEST_PORT=18002 TEST_RTC_PORT=31200 \
	  ../run-with-server.sh node --test --test-concurrency=1 spanning.test.mjs two-peers.test.mjs \
	  late-join-and-leave.test.mjs hls.test.mjs active-speaker.test.mjs data-channels.test.mjs
	@# TURN relay: the test starts coturn on loopback with the same secret; relay-only Chromium peers.
	cd tests/browser && SFU_TURN_URLS=turn:127.0.0.1:3478 SFU_TURN_SECRET=browser-test-turn-secret \
	  TEST_PORT=18004 TEST_RTC_PORT=31400 ../run-with-server.sh node --test turn.test.mjs
	@# Built-in TLS: the web app over HTTPS and a room over WSS (self-signed certificate, openssl).
	tests/run-tls-browser-test.sh
	tests/run-tokens-browser-test.sh
	@# ICE-TCP: UDP to the media port dropped on loopback (iptables, root); Chromium peers over TCP.
	tests/run-ice-tcp-browser-test.sh
	@# A subscriber's network drops for 5 s (network namespace; needs root).
	tests/run-network-drop-test.sh
	@# Bandwidth adaptation: a tc-shaped subscriber in a network namespace (600 and 300 kbit/s), ours and the reference.
	tests/run-shaped-test.sh
	@# Three nodes and a redis-server on loopback (placement, moved, failover, Redis restart, drain).
	tests/run-cluster-test.sh

## bench: micro benches of the hot path, then the loadtest (defaults) against a local server
bench: build
	$(CARGO) bench --bench hot_path
	tests/run-with-server.sh sh -c './target/release/loadtest --url "$$SFU_URL"'

## bench-hls: HLS glass-to-glass latency (publisher clock → frame shown on /watch)
bench-hls: build deps-browser deps-system
	cd tests/browser && ../run-with-server.sh node bench-hls-latency.mjs 20
