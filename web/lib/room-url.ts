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
  };
}

/** The link to share: the clean /stream/<id>/ URL, keeping a development `?ws=` override. */
export function inviteLink(roomId: string, href: string): string {
  const current = new URL(href);
  const link = new URL(`/stream/${encodeURIComponent(roomId)}/`, current.origin);
  const ws = current.searchParams.get("ws");
  if (ws) link.searchParams.set("ws", ws);
  return link.toString();
}

/** Path of a room page, keeping a development `?ws=` override. */
export function roomPath(roomId: string, search: string): string {
  const ws = new URLSearchParams(search).get("ws");
  const query = ws ? `?ws=${encodeURIComponent(ws)}` : "";
  return `/stream/${encodeURIComponent(roomId)}/${query}`;
}
