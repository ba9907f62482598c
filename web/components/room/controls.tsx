"use client";

import {
  LayoutPanelTop,
  Link2,
  MessageSquare,
  Mic,
  MicOff,
  MonitorUp,
  MonitorX,
  PhoneOff,
  Video,
  VideoOff,
} from "lucide-react";
import { Button } from "@/components/ui/button";
import { Tooltip } from "@/components/ui/tooltip";

interface ControlsProps {
  micAvailable: boolean;
  micMuted: boolean;
  /** False with a receive-only token: the camera cannot be started. */
  cameraAvailable: boolean;
  cameraOn: boolean;
  cameraBusy: boolean;
  /** null: this browser cannot share a screen (no button). */
  screenSharing: boolean | null;
  screenBusy: boolean;
  speakerLayout: boolean;
  chatOpen: boolean;
  unreadChat: number;
  onToggleMic: () => void;
  onToggleCamera: () => void;
  onToggleScreen: () => void;
  onToggleSpeakerLayout: () => void;
  onToggleChat: () => void;
  onCopyInvite: () => void;
  onLeave: () => void;
}

export function Controls({
  micAvailable,
  micMuted,
  cameraAvailable,
  cameraOn,
  cameraBusy,
  screenSharing,
  screenBusy,
  speakerLayout,
  chatOpen,
  unreadChat,
  onToggleMic,
  onToggleCamera,
  onToggleScreen,
  onToggleSpeakerLayout,
  onToggleChat,
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
      {screenSharing !== null && (
        <Tooltip content={cameraAvailable ? (screenSharing ? "Stop sharing" : "Share screen") : "This link is receive-only"}>
          <Button
            size="icon"
            variant={screenSharing ? "default" : "secondary"}
            aria-label={screenSharing ? "Stop sharing" : "Share screen"}
            disabled={screenBusy || !cameraAvailable}
            onClick={onToggleScreen}
          >
            {screenSharing ? <MonitorX /> : <MonitorUp />}
          </Button>
        </Tooltip>
      )}
      <Tooltip content={speakerLayout ? "Grid layout" : "Speaker layout"}>
        <Button
          size="icon"
          variant={speakerLayout ? "default" : "secondary"}
          aria-label="Speaker"
          aria-pressed={speakerLayout}
          onClick={onToggleSpeakerLayout}
        >
          <LayoutPanelTop />
        </Button>
      </Tooltip>
      <Tooltip content={chatOpen ? "Close chat" : "Open chat"}>
        <Button
          size="icon"
          variant={chatOpen ? "default" : "secondary"}
          aria-label="Chat"
          aria-pressed={chatOpen}
          aria-describedby={unreadChat > 0 ? "chat-unread" : undefined}
          className="relative"
          onClick={onToggleChat}
        >
          <MessageSquare />
          {unreadChat > 0 && (
            <span
              id="chat-unread"
              data-testid="chat-unread"
              className="absolute -right-1 -top-1 flex h-5 min-w-5 items-center justify-center rounded-full bg-destructive px-1 text-[10px] font-semibold text-destructive-foreground"
            >
              {unreadChat > 99 ? "99+" : unreadChat}
              <span className="sr-only"> unread messages</span>
            </span>
          )}
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
