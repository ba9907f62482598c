"use client";

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

/** Column count grows with the number of tiles so every tile stays as large as possible. */
function gridColumns(count: number): string {
  if (count <= 1) return "grid-cols-1 max-w-4xl";
  if (count === 2) return "grid-cols-1 md:grid-cols-2";
  if (count <= 4) return "grid-cols-1 sm:grid-cols-2";
  if (count <= 9) return "grid-cols-2 lg:grid-cols-3";
  return "grid-cols-2 md:grid-cols-3 xl:grid-cols-4";
}

export function RoomGrid({ localName, localVideoTrack, localMic, peers }: RoomGridProps) {
  return (
    <div className={cn("mx-auto grid w-full gap-3", gridColumns(peers.length + 1))}>
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
