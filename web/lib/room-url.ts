/** Where the room page finds its room id and options in the URL. */
import { isValidRoomId } from "./protocol";

/** The single exported room page; the server maps every /stream/<id> URL onto it. */
export const PLACEHOLDER_ROOM_ID = "_";

export interface RoomLocation {
  /** The id as written in the URL (may be invalid), or "" when there is none. */
  roomId: string;
  valid: boolean;
  displayName: string;
  /** `?codec=h264` etc.: preferred video codec for the producer. */
  codec: string | null;
  /** `?token=`: the signed access token of an invite link (null without one). */
  token: string | null;
}

/**
 * Reads `/stream/<roomId>/` from the path. `?room=<id>` overrides it, which is how a plain static
 * server (that serves only /stream/_/) can still open any room during development.
 */
export function parseRoomLocation(href: string): RoomLocation {
  const url = new URL(href);
  const segments = url.pathname.split("/").filter(Boolean);
  const index = segments.indexOf("stream");
  let roomId = index >= 0 ? decodeURIComponent(segments[index + 1] ?? "") : "";
  const override = url.searchParams.get("room") ?? url.searchParams.get("roomId");
  if (override !== null) roomId = override;
  else if (roomId === PLACEHOLDER_ROOM_ID) roomId = "";
  return {
    roomId,
    valid: isValidRoomId(roomId),
    displayName: url.searchParams.get("name") ?? "",
    codec: url.searchParams.get("codec"),
    token: url.searchParams.get("token") || null,
  };
}

/**
 * The link to share: the clean /stream/<id>/ URL, keeping a development `?ws=` override. Never
 * the inviter's own `?token=` (it carries their identity and grants): with access on, the host
 * hands out a token per guest.
 */
export function inviteLink(roomId: string, href: string): string {
  const current = new URL(href);
  const link = new URL(`/stream/${encodeURIComponent(roomId)}/`, current.origin);
  const ws = wsOverride(current.search);
  if (ws) link.searchParams.set("ws", ws);
  return link.toString();
}

/** Path of a room page, keeping a development `?ws=` override (never a token: it is per room). */
export function roomPath(roomId: string, search: string): string {
  const ws = wsOverride(search);
  const query = ws ? `?ws=${encodeURIComponent(ws)}` : "";
  return `/stream/${encodeURIComponent(roomId)}/${query}`;
}

/** The development `?ws=` override, minus any token written into it. */
function wsOverride(search: string): string | null {
  const ws = new URLSearchParams(search).get("ws");
  if (!ws) return null;
  try {
    const url = new URL(ws);
    url.searchParams.delete("token");
    return url.toString();
  } catch {
    return ws;
  }
}
