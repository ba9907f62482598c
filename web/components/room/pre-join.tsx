"use client";

import { AlertCircle, Eye, Link2, Loader2, LogIn } from "lucide-react";
import type { FormEvent } from "react";
import { Alert } from "@/components/ui/alert";
import { Button } from "@/components/ui/button";
import { Card, CardContent, CardDescription, CardHeader, CardTitle } from "@/components/ui/card";
import { Input } from "@/components/ui/input";
import { Label } from "@/components/ui/label";
import type { LocalMediaControls } from "@/hooks/use-local-media";
import type { SessionError } from "@/lib/room-session";
import { DeviceSettings, MediaNotices, MediaPreview } from "./media-preview";
import { VideoTile } from "./video-tile";

interface PreJoinProps {
  roomId: string;
  media: LocalMediaControls;
  name: string;
  /** The invite link's token sets the name: shown, not editable. */
  nameFixed: boolean;
  /** The token does not allow sending: no camera or mic, the user watches and listens. */
  receiveOnly: boolean;
  onNameChange: (name: string) => void;
  micMuted: boolean;
  onToggleMic: () => void;
  joining: boolean;
  error: SessionError | null;
  canJoin: boolean;
  onJoin: () => void;
  onCopyInvite: () => void;
}

export function PreJoin(props: PreJoinProps) {
  const { roomId, media, name, nameFixed, receiveOnly, onNameChange, micMuted, onToggleMic, joining, error, canJoin } =
    props;
  const submit = (event: FormEvent) => {
    event.preventDefault();
    if (canJoin && !joining) props.onJoin();
  };
  return (
    <div className="mx-auto grid max-w-6xl gap-6 px-4 py-8 lg:grid-cols-[1.4fr_1fr] lg:py-14">
      <div className="grid content-start gap-4">
        {receiveOnly ? (
          <VideoTile local name={name || "You"} videoTrack={null} cameraOn={false} mic="off" />
        ) : (
          <>
            <MediaPreview media={media} name={name} micMuted={micMuted} onToggleMic={onToggleMic} />
            <DeviceSettings media={media} />
          </>
        )}
      </div>
      <Card className="h-fit">
        <CardHeader>
          <CardDescription className="uppercase tracking-wider text-xs">Ready to join?</CardDescription>
          <CardTitle className="break-all font-mono text-2xl">{roomId}</CardTitle>
        </CardHeader>
        <CardContent>
          <form className="grid gap-4" onSubmit={submit}>
            <div className="grid gap-2">
              <Label htmlFor="display-name">Your name</Label>
              <Input
                id="display-name"
                placeholder="e.g. Ada"
                maxLength={64}
                autoComplete="nickname"
                value={name}
                readOnly={nameFixed}
                aria-describedby={nameFixed ? "display-name-fixed" : undefined}
                className={nameFixed ? "text-muted-foreground" : undefined}
                onChange={(event) => onNameChange(event.target.value)}
              />
              {nameFixed && (
                <p id="display-name-fixed" className="text-xs text-muted-foreground">
                  Set by your invite link.
                </p>
              )}
            </div>
            {receiveOnly ? <ReceiveOnlyNotice /> : <MediaNotices media={media} />}
            {error && <JoinError error={error} />}
            <Button type="submit" size="lg" disabled={!canJoin || joining}>
              {joining ? <Loader2 className="animate-spin" /> : <LogIn />}
              {joining ? "Joining…" : "Join"}
            </Button>
            <Button type="button" variant="ghost" onClick={props.onCopyInvite}>
              <Link2 /> Copy invite link
            </Button>
          </form>
        </CardContent>
      </Card>
    </div>
  );
}

function ReceiveOnlyNotice() {
  return (
    <Alert>
      <Eye />
      <div>
        <p className="font-medium">Watch and listen</p>
        <p className="text-muted-foreground">This invite link lets you see and hear the room, not send video or audio.</p>
      </div>
    </Alert>
  );
}

function JoinError({ error }: { error: SessionError }) {
  const { title, text } = describe(error);
  return (
    <Alert variant="destructive">
      <AlertCircle />
      <div>
        <p className="font-medium">{title}</p>
        <p className="text-destructive/80">{text}</p>
      </div>
    </Alert>
  );
}

function describe(error: SessionError): { title: string; text: string } {
  switch (error.code) {
    case "unreachable":
      return { title: "Server unreachable", text: "Could not connect to the server. Check your connection and try again." };
    case "limit":
      return { title: "Room is full", text: "This room has reached its participant limit. Try again later or start a new room." };
    case "bad-request":
      return { title: "Invalid room", text: error.message };
    case "closed":
      return { title: "Connection lost", text: "The connection to the server dropped and could not be restored. Join again to retry." };
    case "timeout":
      return { title: "Server not responding", text: "The server took too long to answer. Try again." };
    default:
      return { title: "Could not join", text: error.message };
  }
}
