/**
 * Bandwidth-adaptive video: how this client publishes its camera (simulcast) and which simulcast
 * layer a remote tile asks for. Pure functions, no I/O.
 */
import type { types } from "mediasoup-client";

/** Low, medium, full resolution; each with three temporal layers so the server can also thin fps. */
const CAMERA_LAYERS: readonly { scaleResolutionDownBy: number; maxBitrate: number }[] = [
  { scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { scaleResolutionDownBy: 1, maxBitrate: 2_500_000 },
];

/** What `transport.produce()` gets besides the track for the camera. */
export interface CameraSendOptions {
  encodings: types.RtpEncodingParameters[];
  codecOptions: types.ProducerCodecOptions;
}

/**
 * The camera's simulcast encodings for the Device's handler. Firefox gets no `scalabilityMode`
 * in its send encodings (it may refuse the field); mediasoup-client's Firefox handler still
 * announces L1T3 to the server for VP8/H264 simulcast.
 */
export function cameraSendOptions(handlerName: string): CameraSendOptions {
  const firefox = handlerName.startsWith("Firefox");
  return {
    encodings: CAMERA_LAYERS.map((layer) => (firefox ? { ...layer } : { ...layer, scalabilityMode: "L1T3" })),
    // Start near the middle layer's rate instead of Chromium's 300 kbit/s, so the full layer
    // appears within seconds on a good link.
    codecOptions: { videoGoogleStartBitrate: 1000 },
  };
}

/**
 * The spatial layers a consumer can switch between: N of the server's `LNTx` scalability mode,
 * or 1 (not simulcast: nothing to choose).
 */
export function spatialLayerCount(rtpParameters: types.RtpParameters): number {
  const mode = rtpParameters.encodings?.[0]?.scalabilityMode ?? "";
  const match = /^L(\d+)/.exec(mode);
  const layers = match ? Number(match[1]) : 1;
  return Number.isInteger(layers) && layers > 1 ? layers : 1;
}

/** Widest rendering (device px) each spatial layer serves; wider tiles get the next layer. */
const LAYER_MAX_WIDTHS: readonly number[] = [320, 640];

/**
 * The spatial layer that fits a tile `devicePixels` wide: a hidden tile (off screen, or the tab
 * in the background) needs only the lowest layer.
 */
export function preferredSpatialLayer(devicePixels: number, visible: boolean, layers: number): number {
  if (!visible) return 0;
  const fitting = LAYER_MAX_WIDTHS.findIndex((maxWidth) => devicePixels <= maxWidth);
  const layer = fitting === -1 ? LAYER_MAX_WIDTHS.length : fitting;
  return Math.min(layer, layers - 1);
}
