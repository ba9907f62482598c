"use client";

import { useEffect, useRef, useState } from "react";
import { HlsPlayer, type HlsStatus } from "@/lib/hls-player";

/** Plays `url` into the returned video ref while mounted; null url plays nothing. */
export function useHlsPlayer(url: string | null) {
  const videoRef = useRef<HTMLVideoElement>(null);
  const [status, setStatus] = useState<{ url: string | null; value: HlsStatus }>({
    url: null,
    value: "connecting",
  });

  useEffect(() => {
    const video = videoRef.current;
    if (!video || !url) return;
    const player = new HlsPlayer(video, url);
    const unsubscribe = player.on("status", (value) => setStatus({ url, value }));
    player.start();
    return () => {
      unsubscribe();
      player.destroy();
    };
  }, [url]);

  // A status reported for an earlier url is stale.
  const current: HlsStatus = status.url === url ? status.value : "connecting";
  return { videoRef, status: current };
}
