/**
 * Chat over data channels: every peer has one data producer labelled `chat`; a message is one
 * UTF-8 JSON object `{"text": "..."}`. The sender is whoever owns the data producer it came on
 * (the server tells us), never a name inside the message. Pure functions, no I/O.
 */

export const CHAT_LABEL = "chat";
export const CHAT_PROTOCOL = "chat-v1";
/** Largest message the UI sends or shows, in UTF-8 bytes of its encoded form. */
export const MAX_CHAT_MESSAGE_BYTES = 16 * 1024;
/** Messages kept in memory; older ones scroll away. */
export const MAX_CHAT_HISTORY = 500;

/** "unavailable": the server offers no data channels (no sctpParameters). */
export type ChatStatus = "connecting" | "ready" | "unavailable";

export interface ChatMessage {
  /** Increases by one per message of this session (keys, unread counts). */
  seq: number;
  /** null: sent by us. */
  peerId: string | null;
  senderName: string;
  text: string;
  /** Local clock, ms since the epoch: when it was sent (ours) or received. */
  at: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** UTF-8 size of the message `text` becomes on the wire. */
export function encodedSize(text: string): number {
  return encoder.encode(encodeChat(text)).byteLength;
}

export function encodeChat(text: string): string {
  return JSON.stringify({ text });
}

/** Why `text` cannot be sent, or null. */
export function chatTextProblem(text: string): string | null {
  if (text.trim().length === 0) return "empty";
  if (encodedSize(text) > MAX_CHAT_MESSAGE_BYTES) {
    return `too long: at most ${MAX_CHAT_MESSAGE_BYTES / 1024} KiB`;
  }
  return null;
}

/** The text of one received message, or null for anything malformed or oversized. */
export function decodeChat(data: unknown): string | null {
  let raw: string;
  if (typeof data === "string") {
    raw = data;
  } else if (data instanceof ArrayBuffer) {
    if (data.byteLength > MAX_CHAT_MESSAGE_BYTES) return null;
    try {
      raw = decoder.decode(data);
    } catch {
      return null;
    }
  } else {
    return null;
  }
  // A JS string's length is at most its UTF-8 size, so this bounds parsing cheaply first.
  if (raw.length > MAX_CHAT_MESSAGE_BYTES || encoder.encode(raw).byteLength > MAX_CHAT_MESSAGE_BYTES) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    return null;
  }
  if (typeof parsed !== "object" || parsed === null) return null;
  const text = (parsed as { text?: unknown }).text;
  if (typeof text !== "string" || text.trim().length === 0) return null;
  return text;
}
