"use client";

import { AlertTriangle, Mic, MicOff, Video, VideoOff } from "lucide-react";
import { Alert } from "@/components/ui/alert";
import { Button } from "@/components/ui/button";
import type { LocalMediaControls } from "@/hooks/use-local-media";
import { describeProblem } from "@/lib/local-media";
import { DevicePicker } from "./device-pickers";
import { VideoTile } from "./video-tile";

interface MediaPreviewProps {
  media: LocalMediaControls;
  name: string;
  micMuted: boolean;
  onToggleMic: () => void;
}

/** Local camera preview with mic/camera toggles; pair it with <MediaNotices> and <DeviceSettings>. */
export function MediaPreview({ media, name, micMuted, onToggleMic }: MediaPreviewProps) {
  const cameraOn = media.videoTrack !== null;
  const micAvailable = media.audioTrack !== null;
  return (
    <div className="relative">
      <VideoTile
        local
        name={name || "You"}
        videoTrack={media.videoTrack}
        cameraOn={cameraOn}
        mic={!micAvailable ? "off" : micMuted ? "muted" : "live"}
      />
      {!media.ready && (
        <div className="absolute inset-0 flex items-center justify-center rounded-xl bg-background/70 text-sm text-muted-foreground">
          Starting camera…
        </div>
      )}
      <div className="absolute inset-x-0 bottom-3 flex justify-center gap-2">
        <Button
          size="icon"
          variant={micMuted || !micAvailable ? "destructive" : "secondary"}
          aria-label={micMuted ? "Unmute microphone" : "Mute microphone"}
          aria-pressed={micMuted}
          disabled={!micAvailable}
          onClick={onToggleMic}
        >
          {micMuted || !micAvailable ? <MicOff /> : <Mic />}
        </Button>
        <Button
          size="icon"
          variant={cameraOn ? "secondary" : "destructive"}
          aria-label={cameraOn ? "Turn camera off" : "Turn camera on"}
          aria-pressed={!cameraOn}
          disabled={!media.ready}
          onClick={() => void media.setCameraOn(!cameraOn)}
        >
          {cameraOn ? <Video /> : <VideoOff />}
        </Button>
      </div>
    </div>
  );
}

export function DeviceSettings({ media }: { media: LocalMediaControls }) {
  return (
    <div className="grid gap-4 sm:grid-cols-2">
      <DevicePicker
        id="camera-device"
        label="Camera"
        devices={media.devices.video}
        value={media.videoDeviceId}
        onChange={(id) => void media.selectVideoDevice(id)}
      />
      <DevicePicker
        id="mic-device"
        label="Microphone"
        devices={media.devices.audio}
        value={media.audioDeviceId}
        onChange={(id) => void media.selectAudioDevice(id)}
      />
    </div>
  );
}

/** Explains missing or blocked devices; with neither, the user joins listen-only. */
export function MediaNotices({ media }: { media: LocalMediaControls }) {
  if (!media.ready) return null;
  const { audioProblem, videoProblem } = media;
  if (audioProblem && videoProblem) {
    return (
      <Alert variant="warning">
        <AlertTriangle />
        <div>
          <p className="font-medium">Listen-only</p>
          <p className="text-warning/80">
            {describeProblem("video", videoProblem)} {describeProblem("audio", audioProblem)} You
            can still join to watch and listen.
          </p>
        </div>
      </Alert>
    );
  }
  const problem = audioProblem
    ? describeProblem("audio", audioProblem) + " Others won't hear you."
    : videoProblem
      ? describeProblem("video", videoProblem) + " Others won't see you."
      : null;
  if (!problem) return null;
  return (
    <Alert variant="warning">
      <AlertTriangle />
      <p>{problem}</p>
    </Alert>
  );
}
