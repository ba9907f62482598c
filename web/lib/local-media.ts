/** Camera/microphone acquisition and device listing, with errors a person can act on. */

export type MediaProblem = "denied" | "missing" | "unavailable" | "insecure";

export interface DeviceOption {
  deviceId: string;
  label: string;
}

export interface DeviceLists {
  audio: DeviceOption[];
  video: DeviceOption[];
}

export async function listDevices(): Promise<DeviceLists> {
  if (!navigator.mediaDevices?.enumerateDevices) return { audio: [], video: [] };
  const devices = await navigator.mediaDevices.enumerateDevices();
  const pick = (kind: MediaDeviceKind, fallback: string): DeviceOption[] =>
    devices
      .filter((device) => device.kind === kind && device.deviceId)
      .map((device, index) => ({
        deviceId: device.deviceId,
        label: device.label || `${fallback} ${index + 1}`,
      }));
  return { audio: pick("audioinput", "Microphone"), video: pick("videoinput", "Camera") };
}

export interface OpenResult {
  track: MediaStreamTrack | null;
  problem: MediaProblem | null;
}

const VIDEO_CONSTRAINTS: MediaTrackConstraints = {
  width: { ideal: 1280 },
  height: { ideal: 720 },
  frameRate: { ideal: 30 },
};

/** Opens one track of `kind` from `deviceId` (or the default device). Never throws. */
export async function openTrack(kind: "audio" | "video", deviceId?: string): Promise<OpenResult> {
  if (!navigator.mediaDevices?.getUserMedia) {
    return { track: null, problem: window.isSecureContext ? "unavailable" : "insecure" };
  }
  const device = deviceId ? { deviceId: { exact: deviceId } } : {};
  const constraints: MediaStreamConstraints =
    kind === "audio"
      ? { audio: { ...device, echoCancellation: true, noiseSuppression: true } }
      : { video: { ...VIDEO_CONSTRAINTS, ...device } };
  try {
    const stream = await navigator.mediaDevices.getUserMedia(constraints);
    return { track: stream.getTracks()[0] ?? null, problem: null };
  } catch (error) {
    return { track: null, problem: classify(error) };
  }
}

function classify(error: unknown): MediaProblem {
  const name = error instanceof DOMException ? error.name : "";
  if (name === "NotAllowedError" || name === "SecurityError") return "denied";
  if (name === "NotFoundError" || name === "OverconstrainedError") return "missing";
  return "unavailable";
}

export function describeProblem(kind: "audio" | "video", problem: MediaProblem): string {
  const device = kind === "audio" ? "Microphone" : "Camera";
  switch (problem) {
    case "denied":
      return `${device} access was blocked.`;
    case "missing":
      return `No ${device.toLowerCase()} found.`;
    case "insecure":
      return `${device} needs a secure (https) page.`;
    case "unavailable":
      return `${device} is unavailable (in use by another app?).`;
  }
}

/**
 * Opens microphone and camera with one permission prompt when both are there, falling back to
 * one at a time so a missing camera does not cost the microphone (and vice versa).
 */
export async function openBoth(
  audioDeviceId?: string,
  videoDeviceId?: string,
): Promise<{ audio: OpenResult; video: OpenResult }> {
  if (navigator.mediaDevices?.getUserMedia) {
    try {
      const stream = await navigator.mediaDevices.getUserMedia({
        audio: {
          ...(audioDeviceId ? { deviceId: { exact: audioDeviceId } } : {}),
          echoCancellation: true,
          noiseSuppression: true,
        },
        video: { ...VIDEO_CONSTRAINTS, ...(videoDeviceId ? { deviceId: { exact: videoDeviceId } } : {}) },
      });
      return {
        audio: { track: stream.getAudioTracks()[0] ?? null, problem: null },
        video: { track: stream.getVideoTracks()[0] ?? null, problem: null },
      };
    } catch {
      // fall through: find out which one is the problem
    }
  }
  const audio = await openTrack("audio", audioDeviceId);
  const video = await openTrack("video", videoDeviceId);
  return { audio, video };
}

/** Mutes or unmutes a local track in place (the track keeps running). */
export function setTrackEnabled(track: MediaStreamTrack | null, enabled: boolean): void {
  if (track) track.enabled = enabled;
}

/** Whether this browser can share a screen at all (getDisplayMedia; not on most phones). */
export function canShareScreen(): boolean {
  return typeof navigator !== "undefined" && typeof navigator.mediaDevices?.getDisplayMedia === "function";
}

/**
 * Asks the user for a screen, window or tab: its video track tuned for text (`contentHint`
 * "detail" keeps resolution over frame rate), or null when they cancel. Throws other errors.
 */
export async function openScreen(): Promise<MediaStreamTrack | null> {
  let stream: MediaStream;
  try {
    stream = await navigator.mediaDevices.getDisplayMedia({
      video: { frameRate: { ideal: 15, max: 30 } },
      audio: false,
    });
  } catch (error) {
    if (error instanceof DOMException && (error.name === "NotAllowedError" || error.name === "AbortError")) return null;
    throw error;
  }
  const [track] = stream.getVideoTracks();
  if (!track) return null;
  track.contentHint = "detail";
  return track;
}
