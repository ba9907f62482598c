"use client";

import { Loader2, Play, Radio, WifiOff } from "lucide-react";
import { useState, type FormEvent } from "react";
import { Badge } from "@/components/ui/badge";
import { Button } from "@/components/ui/button";
import { Input } from "@/components/ui/input";
import { Label } from "@/components/ui/label";
import { useClientHref } from "@/hooks/use-client-href";
import { AccessErrorCard } from "@/components/room/status-screens";
import { useHlsPlayer } from "@/hooks/use-hls-player";
import { refusalProblem, tokenProblem, withToken, type AccessProblem } from "@/lib/access-token";
import type { HlsStatus } from "@/lib/hls-player";
import { isValidRoomId } from "@/lib/protocol";

function roomIdFrom(href: string | null): string | null {
  if (!href) return null;
  const roomId = new URL(href).searchParams.get("roomId");
  return roomId && isValidRoomId(roomId) ? roomId : null;
}

function tokenFrom(href: string | null): string | null {
  return href ? new URL(href).searchParams.get("token") || null : null;
}

/** Why the player shows an access screen: the token checked here first, then the server's answer. */
function accessProblemOf(roomId: string | null, token: string | null, status: HlsStatus): AccessProblem | null {
  if (!roomId) return null;
  const local = tokenProblem(token, roomId);
  if (local) return local;
  if (status === "unauthorized") return refusalProblem(token);
  if (status === "forbidden") return "wrong-room";
  return null;
}

export function WatchRoom() {
  const href = useClientHref();
  const [chosen, setChosen] = useState<string | null>(null);
  const roomId = chosen ?? roomIdFrom(href);
  const token = tokenFrom(href);
  const blocked = roomId !== null && tokenProblem(token, roomId) !== null;
  // The playlist carries the token; the server puts it on the segment URIs it lists.
  const url = roomId && !blocked ? withToken(`/hls/${encodeURIComponent(roomId)}/index.m3u8`, token) : null;
  const { videoRef, status } = useHlsPlayer(url);
  const accessProblem = accessProblemOf(roomId, token, status);
  const [draft, setDraft] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);

  const submit = (event: FormEvent) => {
    event.preventDefault();
    const value = (draft ?? roomId ?? "").trim();
    if (!isValidRoomId(value)) {
      setError(value ? "Invalid room id. Use 1–64 letters, digits, “-” or “_”." : "Enter a room id.");
      return;
    }
    setError(null);
    setChosen(value);
    const next = new URL(window.location.href);
    next.searchParams.set("roomId", value);
    window.history.replaceState(null, "", next);
  };

  return (
    <div className="mx-auto grid max-w-5xl gap-6 px-4 py-8 lg:py-14">
      <div className="flex flex-col gap-4 sm:flex-row sm:items-end sm:justify-between">
        <div>
          <h1 className="text-2xl font-semibold tracking-tight">Watch a room</h1>
          <p className="mt-1 text-sm text-muted-foreground">Follow a room live over HLS — no camera needed.</p>
        </div>
        <form onSubmit={submit} className="grid gap-2 sm:w-96" noValidate>
          <Label htmlFor="watch-room-id" className="sr-only">
            Room id
          </Label>
          <div className="flex gap-2">
            <Input
              id="watch-room-id"
              placeholder="Room id"
              value={draft ?? roomId ?? ""}
              maxLength={64}
              spellCheck={false}
              aria-invalid={error !== null}
              onChange={(event) => {
                setDraft(event.target.value);
                setError(null);
              }}
            />
            <Button type="submit">
              <Play /> Watch
            </Button>
          </div>
          {error && (
            <p role="alert" className="text-sm text-destructive">
              {error}
            </p>
          )}
        </form>
      </div>
      <div className="relative aspect-video w-full overflow-hidden rounded-xl border border-border/60 bg-black shadow-xl shadow-black/40">
        <video
          ref={videoRef}
          data-testid="hls-video"
          controls
          muted
          playsInline
          className="size-full bg-black object-contain"
        />
        {roomId && accessProblem && (
          <div className="absolute inset-0 flex items-center justify-center bg-black/80 p-4">
            <AccessErrorCard reason={accessProblem} className="w-full max-w-sm" />
          </div>
        )}
        {roomId && !accessProblem && status !== "live" && <PlayerOverlay status={status} />}
        {!roomId && (
          <div className="absolute inset-0 flex flex-col items-center justify-center gap-2 text-muted-foreground">
            <Radio className="size-8" />
            <p className="text-sm">Enter a room id to start watching.</p>
          </div>
        )}
        {roomId && !accessProblem && (
          <div className="absolute left-3 top-3">
            <StatusBadge status={status} />
          </div>
        )}
      </div>
    </div>
  );
}

function StatusBadge({ status }: { status: HlsStatus }) {
  if (status === "live")
    return (
      <Badge variant="destructive" className="bg-destructive text-white">
        <span className="size-1.5 animate-pulse rounded-full bg-white" /> LIVE
      </Badge>
    );
  if (status === "offline") return <Badge variant="secondary">Offline</Badge>;
  return <Badge variant="secondary">Connecting…</Badge>;
}

function PlayerOverlay({ status }: { status: HlsStatus }) {
  return (
    <div className="pointer-events-none absolute inset-0 flex flex-col items-center justify-center gap-3 bg-black/70 text-center">
      {status === "offline" ? (
        <>
          <WifiOff className="size-8 text-muted-foreground" />
          <p className="font-medium">This room is offline</p>
          <p className="max-w-xs text-sm text-muted-foreground">
            Nobody is streaming yet. We&apos;ll start playing as soon as the room goes live.
          </p>
        </>
      ) : (
        <>
          <Loader2 className="size-8 animate-spin text-muted-foreground" />
          <p className="text-sm text-muted-foreground">Connecting to the stream…</p>
        </>
      )}
    </div>
  );
}
