"use client";

import { Mic, MicOff, VideoOff } from "lucide-react";
import { useRef, type ReactNode } from "react";
import { usePreferredLayer, type LayerTarget } from "@/hooks/use-preferred-layer";
import { cn } from "@/lib/utils";
import { BandwidthPausedBadge } from "./bandwidth-badge";
import { TrackVideo } from "./media-elements";

export type MicState = "live" | "muted" | "off";

interface VideoTileProps {
  name: string;
  videoTrack: MediaStreamTrack | null;
  /** False shows the camera-off placeholder even if a (paused) track exists. */
  cameraOn: boolean;
  mic: MicState;
  local?: boolean;
  peerId?: string;
  /** The room's active speaker: ringed, and `data-speaking="true"` for tests. */
  speaking?: boolean;
  /** Remote simulcast video: asks for the layer that fits the tile's size via `onPreferredLayer`. */
  layers?: LayerTarget;
  onPreferredLayer?: (consumerId: string, spatialLayer: number) => void;
  /** The server paused this video for our bandwidth: a badge, `data-bandwidth-paused="true"`. */
  bandwidthPaused?: boolean;
  /** Extra elements (e.g. the remote <audio>). */
  children?: ReactNode;
  className?: string;
}

export function VideoTile({
  name,
  videoTrack,
  cameraOn,
  mic,
  local = false,
  peerId,
  speaking = false,
  layers,
  onPreferredLayer,
  bandwidthPaused = false,
  children,
  className,
}: VideoTileProps) {
  const showVideo = cameraOn && videoTrack !== null;
  const tileRef = useRef<HTMLDivElement>(null);
  usePreferredLayer(tileRef, layers ?? NO_LAYERS, onPreferredLayer);
  return (
    <div
      ref={tileRef}
      className={cn(
        "group relative aspect-video w-full overflow-hidden rounded-xl border border-border/60 bg-muted/40 shadow-lg shadow-black/30 transition-shadow",
        speaking && "ring-4 ring-success ring-offset-2 ring-offset-background",
        className,
      )}
      data-peer-tile={peerId ?? "local"}
      data-speaking={speaking ? "true" : "false"}
      data-bandwidth-paused={bandwidthPaused ? "true" : "false"}
    >
      <TrackVideo
        track={videoTrack}
        muted={local}
        data-testid={local ? "local-video" : "remote-video"}
        data-peer-id={peerId}
        className={cn(
          "size-full object-cover transition-opacity",
          local && "-scale-x-100",
          showVideo ? "opacity-100" : "opacity-0",
        )}
      />
      {!showVideo && (
        <div className="absolute inset-0 flex flex-col items-center justify-center gap-3 bg-gradient-to-br from-secondary to-background">
          <div className="flex size-16 items-center justify-center rounded-full bg-primary/20 text-2xl font-semibold text-primary sm:size-20 sm:text-3xl">
            {initials(name)}
          </div>
          <span className="flex items-center gap-1.5 text-xs text-muted-foreground">
            <VideoOff className="size-3.5" /> Camera off
          </span>
        </div>
      )}
      {showVideo && bandwidthPaused && <BandwidthPausedBadge />}
      <div className="absolute inset-x-2 bottom-2 flex items-center justify-between gap-2">
        <span className="flex min-w-0 items-center gap-1.5 rounded-md bg-black/55 px-2 py-1 text-xs font-medium text-white backdrop-blur">
          <MicIcon mic={mic} />
          <span className="truncate">{name}</span>
        </span>
      </div>
      {children}
    </div>
  );
}

const NO_LAYERS: LayerTarget = { consumerId: null, spatialLayers: 1 };

function MicIcon({ mic }: { mic: MicState }) {
  if (mic === "live") return <Mic aria-label="Microphone on" className="size-3.5 text-success" />;
  return (
    <MicOff
      aria-label={mic === "muted" ? "Microphone muted" : "No microphone"}
      className="size-3.5 text-destructive"
    />
  );
}

function initials(name: string): string {
  const parts = name.trim().split(/\s+/).filter(Boolean);
  if (parts.length === 0) return "?";
  return parts
    .slice(0, 2)
    .map((part) => part[0]?.toUpperCase() ?? "")
    .join("");
}
