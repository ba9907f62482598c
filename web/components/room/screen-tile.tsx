"use client";

import { Monitor } from "lucide-react";
import { cn } from "@/lib/utils";
import { TrackVideo } from "./media-elements";

interface ScreenTileProps {
  name: string;
  track: MediaStreamTrack | null;
  /** Our own screen (a small preview; never mirrored, never the `screen-video` hook). */
  local?: boolean;
  peerId?: string;
  className?: string;
}

/** A shared screen: letterboxed (object-contain) so text stays whole and readable. */
export function ScreenTile({ name, track, local = false, peerId, className }: ScreenTileProps) {
  return (
    <div
      className={cn(
        "relative aspect-video w-full overflow-hidden rounded-xl border border-border/60 bg-black shadow-lg shadow-black/30",
        className,
      )}
      data-screen-tile={peerId ?? "local"}
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
    </div>
  );
}
