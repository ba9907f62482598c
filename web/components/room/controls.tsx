"use client";

import { Link2, Mic, MicOff, PhoneOff, Video, VideoOff } from "lucide-react";
import { Button } from "@/components/ui/button";
import { Tooltip } from "@/components/ui/tooltip";

interface ControlsProps {
  micAvailable: boolean;
  micMuted: boolean;
  /** False with a receive-only token: the camera cannot be started. */
  cameraAvailable: boolean;
  cameraOn: boolean;
  cameraBusy: boolean;
  onToggleMic: () => void;
  onToggleCamera: () => void;
  onCopyInvite: () => void;
  onLeave: () => void;
}

export function Controls({
  micAvailable,
  micMuted,
  cameraAvailable,
  cameraOn,
  cameraBusy,
  onToggleMic,
  onToggleCamera,
  onCopyInvite,
  onLeave,
}: ControlsProps) {
  const micLabel = micMuted ? "Unmute microphone" : "Mute microphone";
  const cameraLabel = cameraOn ? "Stop camera" : "Start camera";
  return (
    <div className="flex items-center justify-center gap-2 rounded-2xl border border-border/60 bg-card/80 p-2 shadow-xl shadow-black/30 backdrop-blur sm:gap-3">
      <Tooltip content={micAvailable ? micLabel : "No microphone"}>
        <Button
          size="icon"
          variant={micMuted || !micAvailable ? "destructive" : "secondary"}
          aria-label={micLabel}
          aria-pressed={micMuted}
          disabled={!micAvailable}
          onClick={onToggleMic}
        >
          {micMuted || !micAvailable ? <MicOff /> : <Mic />}
        </Button>
      </Tooltip>
      <Tooltip content={cameraAvailable ? cameraLabel : "This link is receive-only"}>
        <Button
          size="icon"
          variant={cameraOn ? "secondary" : "destructive"}
          aria-label={cameraLabel}
          aria-pressed={!cameraOn}
          disabled={cameraBusy || !cameraAvailable}
          onClick={onToggleCamera}
        >
          {cameraOn ? <Video /> : <VideoOff />}
        </Button>
      </Tooltip>
      <Tooltip content="Copy invite link">
        <Button size="icon" variant="secondary" aria-label="Copy invite link" onClick={onCopyInvite}>
          <Link2 />
        </Button>
      </Tooltip>
      <Button variant="destructive" className="h-11 rounded-full px-5" onClick={onLeave}>
        <PhoneOff /> Leave
      </Button>
    </div>
  );
}
