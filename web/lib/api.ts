/** The JSON API on the same origin as the page (protocol.md, "HTTP on the same port"). */

/** A fresh room id like the server's (src/ids.rs): 10 characters, no look-alikes (0/o, 1/l). */
function localRoomId(): string {
  // 32 symbols: `b % 32` is unbiased.
  const alphabet = "abcdefghijkmnpqrstuvwxyz23456789";
  const bytes = crypto.getRandomValues(new Uint8Array(10));
  return Array.from(bytes, (b) => alphabet[b % alphabet.length]).join("");
}

/**
 * A fresh room id from the server. With access control on, the API is for admins only (401/403):
 * the id is then made here, and the room page asks for an invite link (a token) to enter it.
 */
export async function createRoom(): Promise<string> {
  const response = await fetch("/api/rooms", { method: "POST" });
  if (response.status === 401 || response.status === 403) return localRoomId();
  if (!response.ok) throw new Error(`POST /api/rooms: ${response.status}`);
  const body = (await response.json()) as { roomId?: unknown };
  if (typeof body.roomId !== "string") throw new Error("POST /api/rooms: no roomId");
  return body.roomId;
}
