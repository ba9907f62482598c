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
import { canShareScreen, openScreen, setTrackEnabled } from "@/lib/local-media";
import { ChatPanel } from "./chat-panel";
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
  const [screenTrack, setScreenTrack] = useState<MediaStreamTrack | null>(null);
  const [screenBusy, setScreenBusy] = useState(false);
  const [speakerLayout, setSpeakerLayout] = useState(false);
  const [chatOpen, setChatOpen] = useState(false);
  /** Highest chat message seq the user has had on screen. */
  const [seenChatSeq, setSeenChatSeq] = useState(0);
  /** The last peer that was the active speaker: stays on stage through silences. */
  const [stagePeerId, setStagePeerId] = useState<string | null>(null);

  const status = snapshot.status;
  const messages = snapshot.chat.messages;
  const lastChatSeq = messages.at(-1)?.seq ?? 0;
  if (chatOpen && seenChatSeq !== lastChatSeq) setSeenChatSeq(lastChatSeq);
  const unreadChat = chatOpen ? 0 : messages.filter((m) => m.peerId !== null && m.seq > seenChatSeq).length;
  if (snapshot.activeSpeakerId && snapshot.activeSpeakerId !== stagePeerId) setStagePeerId(snapshot.activeSpeakerId);
  // Leaving ends the share (the session stops the track; a stopped track fires no "ended").
  if (screenTrack && (status === "left" || status === "failed")) setScreenTrack(null);

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

  const toggleScreen = useCallback(async () => {
    setScreenBusy(true);
    try {
      if (screenTrack) {
        setScreenTrack(null);
        await session.stopScreenShare();
        return;
      }
      const track = await openScreen();
      if (!track) return; // the user cancelled the picker
      setScreenTrack(track);
      track.addEventListener("ended", () => setScreenTrack((current) => (current === track ? null : current)));
      await session.startScreenShare(track);
      // Not produced after all (e.g. the token does not allow sending): do not pretend it is.
      if (session.snapshot.screen !== "live") {
        setScreenTrack(null);
        await session.stopScreenShare();
        toast.error("Could not share the screen");
      }
    } catch (error) {
      setScreenTrack(null);
      toast.error("Could not share the screen", { description: error instanceof Error ? error.message : undefined });
    } finally {
      setScreenBusy(false);
    }
  }, [screenTrack, session]);

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
      <div className="flex flex-1 gap-3 px-3 pb-28 sm:px-6">
        <div className="min-w-0 flex-1">
          <RoomGrid
            localName={name.trim()}
            localVideoTrack={media.videoTrack}
            localMic={!media.audioTrack ? "off" : micMuted ? "muted" : "live"}
            localPeerId={snapshot.peerId}
            localScreenTrack={snapshot.screen === "live" ? screenTrack : null}
            peers={snapshot.peers}
            activeSpeakerId={snapshot.activeSpeakerId}
            stagePeerId={stagePeerId}
            speakerLayout={speakerLayout}
            onPreferredLayer={session.setPreferredSpatialLayer}
          />
        </div>
        {chatOpen && (
          <div className="fixed inset-x-3 bottom-24 top-20 z-20 sm:static sm:inset-auto sm:h-[calc(100dvh-12rem)] sm:w-80 sm:shrink-0">
            <ChatPanel
              status={snapshot.chat.status}
              messages={messages}
              onSend={(text) => session.sendChat(text)}
              onClose={() => setChatOpen(false)}
            />
          </div>
        )}
      </div>
      <div className="fixed inset-x-0 bottom-4 z-30 flex justify-center px-3">
        <Controls
          micAvailable={media.audioTrack !== null}
          cameraAvailable={canPublish}
          micMuted={micMuted}
          cameraOn={media.videoTrack !== null}
          cameraBusy={cameraBusy}
          screenSharing={canShareScreen() ? screenTrack !== null : null}
          screenBusy={screenBusy}
          speakerLayout={speakerLayout}
          chatOpen={chatOpen}
          unreadChat={unreadChat}
          onToggleMic={toggleMic}
          onToggleCamera={() => void toggleCamera()}
          onToggleScreen={() => void toggleScreen()}
          onToggleSpeakerLayout={() => setSpeakerLayout((on) => !on)}
          onToggleChat={() => setChatOpen((open) => !open)}
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
