/**
 * Bandwidth-adaptive video: how this client publishes its camera (simulcast). Pure, no I/O.
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
