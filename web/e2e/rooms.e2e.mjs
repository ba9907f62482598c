#!/usr/bin/env node
// Browser check of the room flow against a running server (not part of `npm test`: it needs
// Chromium and an SFU). playwright-core is loaded from PW_DIR so it stays out of package.json:
//   mkdir -p /tmp/pw && (cd /tmp/pw && npm i playwright-core)
//   BASE=http://127.0.0.1:3000 PW_DIR=/tmp/pw node e2e/rooms.e2e.mjs
// BASE is the web UI (the Rust server, or scripts/serve-out.mjs in front of an SFU).
import { createRequire } from "node:module";

const { chromium } = createRequire(`${process.env.PW_DIR ?? "/tmp/pw"}/`)("playwright-core");
const base = process.env.BASE ?? "http://127.0.0.1:3000";
const extra = process.env.QUERY ?? ""; // e.g. "&codec=h264" or "&ws=ws://127.0.0.1:8100/ws"
const room = `e2e-${Date.now().toString(36)}`;
const results = [];
const consoleErrors = [];

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--disable-gpu", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
    "--disable-quic",
  ],
});

async function check(name, fn) {
  try {
    await fn();
    results.push([name, true]);
    console.log(`ok - ${name}`);
  } catch (error) {
    results.push([name, false]);
    console.log(`not ok - ${name}: ${error.message.split("\n")[0]}`);
  }
}

async function joined(name) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.on("console", (m) => m.type() === "error" && consoleErrors.push(`${name}: ${m.text()}`));
  page.on("pageerror", (e) => consoleErrors.push(`${name}: ${e.message}`));
  await page.goto(`${base}/stream/${room}/?name=${name}${extra}`);
  await page.getByRole("button", { name: "Join", exact: true }).click();
  await page.getByRole("button", { name: "Leave", exact: true }).waitFor({ timeout: 15_000 });
  return page;
}

function remoteVideosDecoding(page, count) {
  return page.waitForFunction(
    (n) => {
      const videos = [...document.querySelectorAll('video[data-testid="remote-video"]')];
      return videos.length === n && videos.every((v) => v.videoWidth > 0 && v.getVideoPlaybackQuality().totalVideoFrames > 5);
    },
    count,
    { timeout: 20_000 },
  );
}

const remoteCount = (page, count) =>
  page.waitForFunction((n) => document.querySelectorAll('video[data-testid="remote-video"]').length === n, count, {
    timeout: 10_000,
  });

let alice, bob;
await check("two peers each decode the other's video", async () => {
  alice = await joined("Alice");
  bob = await joined("Bob");
  await remoteVideosDecoding(alice, 1);
  await remoteVideosDecoding(bob, 1);
});
await check("stopping the camera shows camera off on the other side", async () => {
  await bob.getByRole("button", { name: "Stop camera" }).click();
  await alice.getByText("Camera off").waitFor({ timeout: 10_000 });
  await bob.getByRole("button", { name: "Start camera" }).click();
  await alice.getByText("Camera off").waitFor({ state: "detached", timeout: 10_000 });
  await remoteVideosDecoding(alice, 1);
});
await check("muting the mic shows muted on the other side", async () => {
  await bob.getByRole("button", { name: "Mute microphone" }).click();
  await alice.locator('[aria-label="Microphone muted"]').waitFor({ timeout: 10_000 });
  await bob.getByRole("button", { name: "Unmute microphone" }).click();
  await alice.locator('[aria-label="Microphone on"]').nth(1).waitFor({ timeout: 10_000 });
});
await check("a third peer appears and disappears live", async () => {
  const carol = await joined("Carol");
  await remoteVideosDecoding(alice, 2);
  await remoteVideosDecoding(carol, 2);
  await carol.context().close();
  await remoteCount(alice, 1);
});
await check("Leave returns to the pre-join state and others drop the tile", async () => {
  await bob.getByRole("button", { name: "Leave", exact: true }).click();
  await bob.getByRole("button", { name: "Join", exact: true }).waitFor();
  await remoteCount(alice, 0);
  await bob.getByRole("button", { name: "Join", exact: true }).click();
  await remoteVideosDecoding(alice, 1);
});
await check("no console errors", async () => {
  if (consoleErrors.length) throw new Error(consoleErrors.join(" | "));
});

await browser.close();
const passed = results.filter(([, ok]) => ok).length;
console.log(`${passed} passed, ${results.length - passed} failed`);
process.exit(passed === results.length ? 0 : 1);
