"use client";

import { AlertCircle, ArrowRight, Loader2, Plus } from "lucide-react";
import { useState, type FormEvent } from "react";
import { Alert } from "@/components/ui/alert";
import { Button } from "@/components/ui/button";
import { Card, CardContent, CardDescription, CardHeader, CardTitle } from "@/components/ui/card";
import { Input } from "@/components/ui/input";
import { Label } from "@/components/ui/label";
import { DeviceSettings, MediaNotices, MediaPreview } from "@/components/room/media-preview";
import { useLocalMedia } from "@/hooks/use-local-media";
import { createRoom } from "@/lib/api";
import { setTrackEnabled } from "@/lib/local-media";
import { isValidRoomId } from "@/lib/protocol";
import { roomPath } from "@/lib/room-url";

const ROOM_ID_HINT = "1–64 letters, digits, “-” or “_”.";

export function StreamLobby() {
  const media = useLocalMedia();
  const [micMuted, setMicMuted] = useState(false);
  const [creating, setCreating] = useState(false);
  const [createError, setCreateError] = useState<string | null>(null);
  const [joinId, setJoinId] = useState("");
  const [joinError, setJoinError] = useState<string | null>(null);

  const toggleMic = () => {
    const muted = !micMuted;
    setMicMuted(muted);
    setTrackEnabled(media.audioTrack, !muted);
  };

  const goToRoom = (roomId: string) => {
    // A full navigation: the room page is one static file served for every room id.
    window.location.assign(roomPath(roomId, window.location.search));
  };

  const create = async () => {
    setCreating(true);
    setCreateError(null);
    try {
      goToRoom(await createRoom());
    } catch {
      setCreateError("Could not create a room: the server did not answer. Try again in a moment.");
      setCreating(false);
    }
  };

  const join = (event: FormEvent) => {
    event.preventDefault();
    const roomId = joinId.trim();
    if (!isValidRoomId(roomId)) {
      setJoinError(roomId ? `Invalid room id. Use ${ROOM_ID_HINT}` : "Enter a room id.");
      return;
    }
    goToRoom(roomId);
  };

  return (
    <div className="mx-auto grid max-w-6xl gap-6 px-4 py-8 lg:grid-cols-[1.4fr_1fr] lg:py-14">
      <div className="grid content-start gap-4">
        <MediaPreview media={media} name="You" micMuted={micMuted} onToggleMic={toggleMic} />
        <DeviceSettings media={media} />
        <MediaNotices media={media} />
      </div>
      <div className="grid content-start gap-6">
        <Card>
          <CardHeader>
            <CardTitle>Start a new room</CardTitle>
            <CardDescription>Get a fresh room id and invite others with a link.</CardDescription>
          </CardHeader>
          <CardContent className="grid gap-3">
            {createError && (
              <Alert variant="destructive">
                <AlertCircle />
                <p>{createError}</p>
              </Alert>
            )}
            <Button size="lg" onClick={() => void create()} disabled={creating}>
              {creating ? <Loader2 className="animate-spin" /> : <Plus />}
              Create room
            </Button>
          </CardContent>
        </Card>
        <Card>
          <CardHeader>
            <CardTitle>Join a room</CardTitle>
            <CardDescription>Have a room id? Enter it below.</CardDescription>
          </CardHeader>
          <CardContent>
            <form className="grid gap-3" onSubmit={join} noValidate>
              <div className="grid gap-2">
                <Label htmlFor="room-id">Room id</Label>
                <div className="flex gap-2">
                  <Input
                    id="room-id"
                    placeholder="e.g. team-standup"
                    value={joinId}
                    maxLength={64}
                    autoComplete="off"
                    spellCheck={false}
                    aria-invalid={joinError !== null}
                    aria-describedby={joinError ? "room-id-error" : "room-id-hint"}
                    onChange={(event) => {
                      setJoinId(event.target.value);
                      setJoinError(null);
                    }}
                  />
                  <Button type="submit" variant="secondary" aria-label="Join room">
                    <ArrowRight />
                  </Button>
                </div>
                {joinError ? (
                  <p id="room-id-error" role="alert" className="text-sm text-destructive">
                    {joinError}
                  </p>
                ) : (
                  <p id="room-id-hint" className="text-xs text-muted-foreground">
                    {ROOM_ID_HINT}
                  </p>
                )}
              </div>
            </form>
          </CardContent>
        </Card>
      </div>
    </div>
  );
}
