"use client";

import type { CSSProperties } from "react";
import type { RemotePeerView } from "@/lib/remote-peers";
import { cn } from "@/lib/utils";
import { TrackAudio } from "./media-elements";
import { VideoTile, type MicState } from "./video-tile";

interface RoomGridProps {
  localName: string;
  localVideoTrack: MediaStreamTrack | null;
  localMic: MicState;
  peers: RemotePeerView[];
}

interface GridLayout {
  classes: string;
  /** Columns on wide screens, used to keep every row on screen. */
  columns: number;
}

/** Column count grows with the number of tiles so every tile stays as large as possible. */
function gridLayout(count: number): GridLayout {
  if (count <= 1) return { classes: "grid-cols-1", columns: 1 };
  if (count === 2) return { classes: "grid-cols-1 sm:grid-cols-2", columns: 2 };
  if (count <= 4) return { classes: "grid-cols-1 min-[480px]:grid-cols-2", columns: 2 };
  if (count <= 9) return { classes: "grid-cols-2 md:grid-cols-3", columns: 3 };
  return { classes: "grid-cols-2 md:grid-cols-3 lg:grid-cols-4", columns: 4 };
}

/**
 * On wide screens the grid is as wide as fits the 16:9 rows into the viewport height (minus the
 * header and the control bar), so the whole room is visible without scrolling.
 */
function maxGridWidth({ columns }: GridLayout, count: number): string {
  const rows = Math.ceil(count / columns);
  return `calc((100dvh - 15rem) * ${(16 / 9) * (columns / rows)})`;
}

export function RoomGrid({ localName, localVideoTrack, localMic, peers }: RoomGridProps) {
  const count = peers.length + 1;
  const layout = gridLayout(count);
  const style = { "--grid-max": maxGridWidth(layout, count) } as CSSProperties;
  return (
    <div
      className={cn("mx-auto grid w-full gap-3 md:max-w-[max(var(--grid-max),24rem)]", layout.classes)}
      style={style}
    >
      <VideoTile
        local
        name={`${localName || "You"} (you)`}
        videoTrack={localVideoTrack}
        cameraOn={localVideoTrack !== null}
        mic={localMic}
      />
      {peers.map((peer) => {
        const video = peer.video;
        const audio = peer.audio;
        const mic: MicState = !audio ? "off" : audio.paused ? "muted" : "live";
        return (
          <VideoTile
            key={peer.peerId}
            peerId={peer.peerId}
            name={peer.displayName || "Guest"}
            videoTrack={video?.track ?? null}
            cameraOn={!!video && !video.paused && video.track !== null}
            mic={mic}
          >
            <TrackAudio track={audio?.track ?? null} />
          </VideoTile>
        );
      })}
    </div>
  );
}
