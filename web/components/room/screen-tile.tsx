"use client";

import { Monitor } from "lucide-react";
import { useRef } from "react";
import { usePreferredLayer, type LayerTarget } from "@/hooks/use-preferred-layer";
import { cn } from "@/lib/utils";
import { BandwidthPausedBadge } from "./bandwidth-badge";
import { TrackVideo } from "./media-elements";

interface ScreenTileProps {
  name: string;
  track: MediaStreamTrack | null;
  /** Our own screen (a small preview; never mirrored, never the `screen-video` hook). */
  local?: boolean;
  peerId?: string;
  /** Only when the share is simulcast (this app shares one encoding: nothing to choose). */
  layers?: LayerTarget;
  onPreferredLayer?: (consumerId: string, spatialLayer: number) => void;
  bandwidthPaused?: boolean;
  className?: string;
}

const NO_LAYERS: LayerTarget = { consumerId: null, spatialLayers: 1 };

/** A shared screen: letterboxed (object-contain) so text stays whole and readable. */
export function ScreenTile({
  name,
  track,
  local = false,
  peerId,
  layers,
  onPreferredLayer,
  bandwidthPaused = false,
  className,
}: ScreenTileProps) {
  const tileRef = useRef<HTMLDivElement>(null);
  usePreferredLayer(tileRef, layers ?? NO_LAYERS, onPreferredLayer);
  return (
    <div
      ref={tileRef}
      className={cn(
        "relative aspect-video w-full overflow-hidden rounded-xl border border-border/60 bg-black shadow-lg shadow-black/30",
        className,
      )}
      data-screen-tile={peerId ?? "local"}
      data-bandwidth-paused={bandwidthPaused ? "true" : "false"}
    >
      <TrackVideo
        track={track}
        muted
        data-testid={local ? "local-screen-video" : "screen-video"}
        data-peer-id={peerId}
        className="size-full object-contain"
      />
      <span className="absolute left-2 top-2 flex items-center gap-1.5 rounded-md bg-black/55 px-2 py-1 text-xs font-medium text-white backdrop-blur">
        <Monitor className="size-3.5" />
        <span className="truncate">{local ? name : `${name}'s screen`}</span>
      </span>
      {track && bandwidthPaused && <BandwidthPausedBadge />}
    </div>
  );
}
