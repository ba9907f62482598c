"use client";

import { useEffect, useRef, type ComponentProps } from "react";

/** Keeps `element.srcObject` in step with one track (or none). */
function useTrackSource<E extends HTMLMediaElement>(track: MediaStreamTrack | null) {
  const ref = useRef<E>(null);
  useEffect(() => {
    const element = ref.current;
    if (!element) return;
    if (!track) {
      element.srcObject = null;
      return;
    }
    element.srcObject = new MediaStream([track]);
    // Autoplay can be refused before a user gesture; the element retries when it can.
    element.play().catch(() => undefined);
  }, [track]);
  return ref;
}

type VideoProps = Omit<ComponentProps<"video">, "ref"> & { track: MediaStreamTrack | null };

export function TrackVideo({ track, ...props }: VideoProps) {
  const ref = useTrackSource<HTMLVideoElement>(track);
  return <video ref={ref} autoPlay playsInline {...props} />;
}

export function TrackAudio({ track }: { track: MediaStreamTrack | null }) {
  const ref = useTrackSource<HTMLAudioElement>(track);
  return <audio ref={ref} autoPlay />;
}
