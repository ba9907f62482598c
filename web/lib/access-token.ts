/**
 * Room access tokens (shared/protocol.md, "Access (tokens)"), as far as the browser needs them:
 * the JWT payload is decoded (never verified: only the server holds the secret) to prefill the
 * display name, to skip the camera without `publish`, and to explain a refusal before or after
 * asking the server. No React.
 */

export interface TokenGrants {
  publish?: boolean;
  subscribe?: boolean;
  data?: boolean;
  admin?: boolean;
}

export interface TokenClaims {
  sub?: string;
  room?: string;
  /** Unix seconds. */
  exp?: number;
  nbf?: number;
  name?: string;
  grants?: TokenGrants;
}

/** Why the app shows an access screen instead of the room (data-reason in the UI). */
export type AccessProblem = "expired" | "wrong-room" | "invalid" | "missing";

/** The payload of a JWT (`header.payload.signature`, base64url JSON), or null if malformed. */
export function decodeToken(token: string): TokenClaims | null {
  const parts = token.split(".");
  if (parts.length !== 3 || !parts[1]) return null;
  try {
    const base64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const binary = atob(base64.padEnd(base64.length + ((4 - (base64.length % 4)) % 4), "="));
    const json = new TextDecoder().decode(Uint8Array.from(binary, (c) => c.charCodeAt(0)));
    const payload: unknown = JSON.parse(json);
    if (typeof payload !== "object" || payload === null || Array.isArray(payload)) return null;
    return payload as TokenClaims;
  } catch {
    return null;
  }
}

/**
 * What is wrong with `token` for `roomId`, as far as the browser can tell without the server:
 * malformed, expired (`exp` <= now) or for another room. Null when it looks usable (or there is
 * no token: whether one is needed only the server knows). `roomId` null: any room (the watch page
 * before a room is chosen).
 */
export function tokenProblem(
  token: string | null,
  roomId: string | null,
  nowMs: number = Date.now(),
): AccessProblem | null {
  if (token === null) return null;
  const claims = decodeToken(token);
  if (!claims) return "invalid";
  if (typeof claims.exp === "number" && claims.exp * 1000 <= nowMs) return "expired";
  if (roomId !== null && typeof claims.room === "string" && claims.room !== "*" && claims.room !== roomId) {
    return "wrong-room";
  }
  return null;
}

/** The server refused us (HTTP 401 at the WebSocket upgrade or on the playlist): why, in words. */
export function refusalProblem(token: string | null, nowMs: number = Date.now()): AccessProblem {
  if (token === null) return "missing";
  return tokenProblem(token, null, nowMs) ?? "invalid";
}

/** The display name the token fixes (its `name` claim), or null. */
export function tokenDisplayName(token: string | null): string | null {
  const name = token ? decodeToken(token)?.name : undefined;
  return typeof name === "string" && name.trim() ? name.trim() : null;
}

/** False only when the token explicitly denies publishing (the user joins receive-only). */
export function tokenCanPublish(token: string | null): boolean {
  return !(token && decodeToken(token)?.grants?.publish === false);
}

/** `url` with `?token=` set (the signaling and HLS URLs); unchanged without a token. */
export function withToken(url: string, token: string | null): string {
  if (!token) return url;
  const absolute = /^[a-z][a-z0-9+.-]*:/i.test(url);
  const parsed = new URL(url, absolute ? undefined : "http://placeholder");
  parsed.searchParams.set("token", token);
  return absolute ? parsed.toString() : `${parsed.pathname}${parsed.search}${parsed.hash}`;
}
