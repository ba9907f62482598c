"use client";

import { useCallback, useEffect, useRef, useState } from "react";
import {
  listDevices,
  openBoth,
  openTrack,
  type DeviceLists,
  type MediaProblem,
} from "@/lib/local-media";

export interface LocalMedia {
  /** The first getUserMedia attempt has finished (tracks or problems are known). */
  ready: boolean;
  audioTrack: MediaStreamTrack | null;
  videoTrack: MediaStreamTrack | null;
  audioProblem: MediaProblem | null;
  videoProblem: MediaProblem | null;
  devices: DeviceLists;
  audioDeviceId: string;
  videoDeviceId: string;
}

const INITIAL: LocalMedia = {
  ready: false,
  audioTrack: null,
  videoTrack: null,
  audioProblem: null,
  videoProblem: null,
  devices: { audio: [], video: [] },
  audioDeviceId: "",
  videoDeviceId: "",
};

/**
 * Owns the local camera and microphone tracks: opens them on mount, swaps devices, turns the
 * camera off (stopping the track, so the camera light goes out) and on, and stops everything on
 * unmount. `enabled: false` (a receive-only token) opens nothing: ready at once, without tracks.
 */
export type LocalMediaControls = ReturnType<typeof useLocalMedia>;

export function useLocalMedia({ enabled = true }: { enabled?: boolean } = {}) {
  const [media, setMedia] = useState<LocalMedia>(() => ({ ...INITIAL, ready: !enabled }));
  const tracks = useRef<{ audio: MediaStreamTrack | null; video: MediaStreamTrack | null }>({
    audio: null,
    video: null,
  });
  const alive = useRef(true);

  const replace = useCallback((kind: "audio" | "video", track: MediaStreamTrack | null) => {
    const old = tracks.current[kind];
    if (old && old !== track) old.stop();
    tracks.current[kind] = track;
  }, []);

  const refreshDevices = useCallback(async () => {
    const devices = await listDevices().catch(() => ({ audio: [], video: [] }));
    if (!alive.current) return;
    setMedia((m) => ({
      ...m,
      devices,
      audioDeviceId:
        tracks.current.audio?.getSettings().deviceId || m.audioDeviceId || devices.audio[0]?.deviceId || "",
      videoDeviceId:
        tracks.current.video?.getSettings().deviceId || m.videoDeviceId || devices.video[0]?.deviceId || "",
    }));
  }, []);

  useEffect(() => {
    alive.current = true;
    if (!enabled) {
      return () => {
        alive.current = false;
      };
    }
    // Per-run flag: under StrictMode the first run's open must not outlive its cleanup.
    let active = true;
    void (async () => {
      const { audio, video } = await openBoth();
      if (!active) {
        audio.track?.stop();
        video.track?.stop();
        return;
      }
      replace("audio", audio.track);
      replace("video", video.track);
      setMedia((m) => ({
        ...m,
        ready: true,
        audioTrack: audio.track,
        videoTrack: video.track,
        audioProblem: audio.problem,
        videoProblem: video.problem,
      }));
      await refreshDevices();
    })();
    const onDeviceChange = () => void refreshDevices();
    navigator.mediaDevices?.addEventListener?.("devicechange", onDeviceChange);
    const current = tracks.current;
    return () => {
      active = false;
      alive.current = false;
      navigator.mediaDevices?.removeEventListener?.("devicechange", onDeviceChange);
      current.audio?.stop();
      current.video?.stop();
      current.audio = null;
      current.video = null;
    };
  }, [enabled, refreshDevices, replace]);

  const open = useCallback(
    async (kind: "audio" | "video", deviceId?: string): Promise<MediaStreamTrack | null> => {
      const { track, problem } = await openTrack(kind, deviceId);
      if (!alive.current) {
        track?.stop();
        return null;
      }
      replace(kind, track);
      setMedia((m) =>
        kind === "audio"
          ? { ...m, audioTrack: track, audioProblem: problem, audioDeviceId: deviceId ?? m.audioDeviceId }
          : { ...m, videoTrack: track, videoProblem: problem, videoDeviceId: deviceId ?? m.videoDeviceId },
      );
      if (track && !problem) void refreshDevices();
      return track;
    },
    [refreshDevices, replace],
  );

  const selectAudioDevice = useCallback((deviceId: string) => open("audio", deviceId), [open]);
  const selectVideoDevice = useCallback((deviceId: string) => open("video", deviceId), [open]);

  /** Turns the camera on (opening the selected device) or off (stopping the track). */
  const setCameraOn = useCallback(
    async (on: boolean): Promise<MediaStreamTrack | null> => {
      if (on) return open("video", media.videoDeviceId || undefined);
      replace("video", null);
      setMedia((m) => ({ ...m, videoTrack: null }));
      return null;
    },
    [open, replace, media.videoDeviceId],
  );

  return { ...media, selectAudioDevice, selectVideoDevice, setCameraOn };
}
