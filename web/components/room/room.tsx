"use client";

import { useCallback, useEffect, useState } from "react";
import { toast } from "sonner";
import { useLocalMedia } from "@/hooks/use-local-media";
import { useRoomSession } from "@/hooks/use-room-session";
import {
  refusalProblem,
  tokenCanPublish,
  tokenDisplayName,
  tokenProblem,
  type AccessProblem,
} from "@/lib/access-token";
import type { SessionError } from "@/lib/room-session";
import { inviteLink } from "@/lib/room-url";
import { setTrackEnabled } from "@/lib/local-media";
import { Controls } from "./controls";
import { PreJoin } from "./pre-join";
import { RoomGrid } from "./room-grid";
import { AccessError, ReconnectingBanner } from "./status-screens";
import { RoomHeader } from "./room-header";

const NAME_KEY = "rooms.displayName";

interface RoomProps {
  roomId: string;
  initialName: string;
  codec: string | null;
  /** `?token=` of the page: sent to the server; its claims shape the UI (never trusted). */
  token: string | null;
}

export function Room({ roomId, initialName, codec, token }: RoomProps) {
  const tokenName = tokenDisplayName(token);
  const canPublish = tokenCanPublish(token);
  const { session, snapshot } = useRoomSession(roomId);
  // Checked before connecting: an expired or other room's link never opens a socket.
  const [tokenCheck, setTokenCheck] = useState<AccessProblem | null>(() => tokenProblem(token, roomId));
  const accessProblem =
    tokenCheck ?? (snapshot.status === "failed" ? refusedBecause(snapshot.error, token) : null);
  // No camera behind an access screen (nor ever for a receive-only token).
  const media = useLocalMedia({ enabled: canPublish && !accessProblem });
  const [name, setName] = useState(() => tokenName ?? (initialName || readStoredName()));
  const [micMuted, setMicMuted] = useState(false);
  const [cameraBusy, setCameraBusy] = useState(false);

  const status = snapshot.status;

  useEffect(() => {
    document.title = `${roomId} · Rooms`;
  }, [roomId]);
  const inRoom = status === "joined" || status === "reconnecting";

  const join = useCallback(() => {
    const problem = tokenProblem(token, roomId);
    if (problem) {
      setTokenCheck(problem);
      return;
    }
    if (!tokenName) storeName(name);
    void session.join({
      displayName: name.trim(),
      audioTrack: canPublish ? media.audioTrack : null,
      videoTrack: canPublish ? media.videoTrack : null,
      micMuted,
      preferredVideoCodec: codec,
      token,
    });
  }, [session, name, tokenName, canPublish, media.audioTrack, media.videoTrack, micMuted, codec, token, roomId]);

  const toggleMic = useCallback(() => {
    const muted = !micMuted;
    setMicMuted(muted);
    setTrackEnabled(media.audioTrack, !muted);
    if (inRoom) void session.setMicMuted(muted);
  }, [micMuted, media.audioTrack, inRoom, session]);

  const toggleCamera = useCallback(async () => {
    setCameraBusy(true);
    try {
      if (media.videoTrack) {
        // Close the producer first, so others see producer-closed rather than a frozen frame.
        await session.setCameraTrack(null);
        await media.setCameraOn(false);
      } else {
        const track = await media.setCameraOn(true);
        if (track) await session.setCameraTrack(track);
        else toast.error("Could not start the camera");
      }
    } finally {
      setCameraBusy(false);
    }
  }, [media, session]);

  const copyInvite = useCallback(async () => {
    const link = inviteLink(roomId, window.location.href);
    try {
      await navigator.clipboard.writeText(link);
      toast.success("Invite link copied", { description: link });
    } catch {
      toast.message("Share this link", { description: link });
    }
  }, [roomId]);

  const leave = useCallback(() => {
    void session.leave();
  }, [session]);

  if (accessProblem) return <AccessError reason={accessProblem} />;

  if (!inRoom) {
    return (
      <PreJoin
        roomId={roomId}
        media={media}
        name={name}
        nameFixed={tokenName !== null}
        receiveOnly={!canPublish}
        onNameChange={setName}
        micMuted={micMuted}
        onToggleMic={toggleMic}
        joining={status === "joining"}
        error={status === "failed" ? snapshot.error : null}
        canJoin={media.ready}
        onJoin={join}
        onCopyInvite={() => void copyInvite()}
      />
    );
  }

  return (
    <div className="flex min-h-[calc(100dvh-3.5rem)] flex-col">
      {status === "reconnecting" && <ReconnectingBanner attempt={snapshot.reconnectAttempt} />}
      <RoomHeader
        roomId={roomId}
        peerCount={snapshot.peers.length + 1}
        reconnecting={status === "reconnecting"}
      />
      <div className="flex-1 px-3 pb-28 sm:px-6">
        <RoomGrid
          localName={name.trim()}
          localVideoTrack={media.videoTrack}
          localMic={!media.audioTrack ? "off" : micMuted ? "muted" : "live"}
          peers={snapshot.peers}
        />
      </div>
      <div className="fixed inset-x-0 bottom-4 z-30 flex justify-center px-3">
        <Controls
          micAvailable={media.audioTrack !== null}
          cameraAvailable={canPublish}
          micMuted={micMuted}
          cameraOn={media.videoTrack !== null}
          cameraBusy={cameraBusy}
          onToggleMic={toggleMic}
          onToggleCamera={() => void toggleCamera()}
          onCopyInvite={() => void copyInvite()}
          onLeave={leave}
        />
      </div>
    </div>
  );
}

/** The access screen for a failed join: refused at the socket, or join-room was `forbidden`. */
function refusedBecause(error: SessionError | null, token: string | null): AccessProblem | null {
  if (error?.code === "unauthorized") return refusalProblem(token);
  if (error?.code === "forbidden") return "wrong-room";
  return null;
}

function readStoredName(): string {
  try {
    return window.localStorage.getItem(NAME_KEY) ?? "";
  } catch {
    return "";
  }
}

function storeName(name: string): void {
  try {
    window.localStorage.setItem(NAME_KEY, name.trim());
  } catch {
    // private mode: not remembering the name is fine
  }
}
