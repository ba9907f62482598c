#!/bin/sh
# Chromium inside the network namespace $SFU_NETNS (used by network-drop.test.mjs).
exec ip netns exec "$SFU_NETNS" "${CHROMIUM:-/usr/bin/chromium}" "$@"
