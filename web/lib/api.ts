/** The JSON API on the same origin as the page (protocol.md, "HTTP on the same port"). */

export async function createRoom(): Promise<string> {
  const response = await fetch("/api/rooms", { method: "POST" });
  if (!response.ok) throw new Error(`POST /api/rooms: ${response.status}`);
  const body = (await response.json()) as { roomId?: unknown };
  if (typeof body.roomId !== "string") throw new Error("POST /api/rooms: no roomId");
  return body.roomId;
}
