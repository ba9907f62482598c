"use client";

import type { CSSProperties, ReactElement } from "react";
import type { RemotePeerView } from "@/lib/remote-peers";
import { cn } from "@/lib/utils";
import { TrackAudio } from "./media-elements";
import { ScreenTile } from "./screen-tile";
import { VideoTile, type MicState } from "./video-tile";

interface RoomGridProps {
  localName: string;
  localVideoTrack: MediaStreamTrack | null;
  localMic: MicState;
  /** Our own peer id (to highlight our tile when we are the active speaker). */
  localPeerId: string | null;
  /** Our own shared screen, shown small to us. */
  localScreenTrack: MediaStreamTrack | null;
  peers: RemotePeerView[];
  activeSpeakerId: string | null;
  /** Speaker layout: this peer's tile large, the others in a strip. */
  stagePeerId: string | null;
  speakerLayout: boolean;
  /** A remote tile's size asks for the simulcast layer that fits it (RoomSession). */
  onPreferredLayer: (consumerId: string, spatialLayer: number) => void;
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

interface Tile {
  peerId: string;
  element: (className?: string) => ReactElement;
}

/**
 * Camera tiles in a grid. A shared screen (anyone's) takes the stage above the cameras, which
 * shrink to a strip; so does the speaker in the speaker layout.
 */
export function RoomGrid(props: RoomGridProps) {
  const { peers, activeSpeakerId, localPeerId, speakerLayout, stagePeerId, onPreferredLayer } = props;
  const localId = localPeerId ?? "local";
  const tiles: Tile[] = [
    {
      peerId: localId,
      element: (className) => (
        <VideoTile
          key="local"
          local
          className={className}
          name={`${props.localName || "You"} (you)`}
          videoTrack={props.localVideoTrack}
          cameraOn={props.localVideoTrack !== null}
          mic={props.localMic}
          speaking={localPeerId !== null && activeSpeakerId === localPeerId}
        />
      ),
    },
    ...peers.map((peer): Tile => {
      const { video, audio, screenAudio } = peer;
      const mic: MicState = !audio ? "off" : audio.paused ? "muted" : "live";
      return {
        peerId: peer.peerId,
        element: (className) => (
          <VideoTile
            key={peer.peerId}
            className={className}
            peerId={peer.peerId}
            name={peer.displayName || "Guest"}
            videoTrack={video?.track ?? null}
            cameraOn={!!video && !video.paused && video.track !== null}
            mic={mic}
            speaking={activeSpeakerId === peer.peerId}
            layers={video ?? undefined}
            onPreferredLayer={onPreferredLayer}
            bandwidthPaused={video?.bandwidthPaused ?? false}
          >
            <TrackAudio track={audio?.track ?? null} />
            {screenAudio && <TrackAudio track={screenAudio.track} />}
          </VideoTile>
        ),
      };
    }),
  ];

  const screens = peers.filter((peer) => peer.screen !== null);
  const speaker = speakerLayout ? (tiles.find((t) => t.peerId === stagePeerId) ?? tiles[1] ?? tiles[0]) : null;

  const localScreen = (className?: string) =>
    props.localScreenTrack && (
      <ScreenTile key="local-screen" local name="Your screen" track={props.localScreenTrack} className={className} />
    );

  if (screens.length > 0 || speaker) {
    const strip = screens.length > 0 ? tiles : tiles.filter((t) => t !== speaker);
    // The stage keeps 16:9 inside the viewport height; the strip is a column beside it on wide
    // screens (a row below it on narrow ones), so nothing hides behind the control bar.
    return (
      <div
        className="mx-auto flex w-full flex-col gap-3 md:w-fit md:flex-row md:items-start"
        data-layout={screens.length > 0 ? "screen" : "speaker"}
      >
        <div
          className={cn(
            "grid w-full gap-3 md:w-[min(calc((100dvh-15rem)*16/9),calc(100vw-20rem))]",
            screens.length > 1 && "md:grid-cols-2",
          )}
        >
          {screens.map((peer) => (
            <ScreenTile
              key={peer.peerId}
              peerId={peer.peerId}
              name={peer.displayName || "Guest"}
              track={peer.screen?.paused ? null : (peer.screen?.track ?? null)}
              layers={peer.screen ?? undefined}
              onPreferredLayer={onPreferredLayer}
              bandwidthPaused={peer.screen?.bandwidthPaused ?? false}
            />
          ))}
          {screens.length === 0 && speaker?.element()}
        </div>
        <div className="flex flex-wrap justify-center gap-3 md:max-h-[calc(100dvh-15rem)] md:w-56 md:flex-col md:flex-nowrap md:justify-start md:overflow-y-auto">
          {localScreen("w-40 shrink-0 sm:w-56")}
          {strip.map((tile) => tile.element("w-40 shrink-0 sm:w-56"))}
        </div>
      </div>
    );
  }

  const count = tiles.length + (props.localScreenTrack ? 1 : 0);
  const layout = gridLayout(count);
  const style = { "--grid-max": maxGridWidth(layout, count) } as CSSProperties;
  return (
    <div
      className={cn("mx-auto grid w-full gap-3 md:max-w-[max(var(--grid-max),24rem)]", layout.classes)}
      style={style}
      data-layout="grid"
    >
      {tiles.map((tile) => tile.element())}
      {localScreen()}
    </div>
  );
}
