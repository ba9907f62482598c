/**
 * WebSocket signaling client for shared/protocol.md: request/response matching by id,
 * per-request timeouts, typed errors and a notification emitter. No React, no mediasoup.
 */
import { Emitter } from "./emitter";
import type {
  ErrorCode,
  Method,
  Notifications,
  NotificationMethod,
  RequestData,
  ResponseData,
} from "./protocol";

export const REQUEST_TIMEOUT_MS = 10_000;
const OPEN_TIMEOUT_MS = 10_000;

export class SignalingError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** `moved` only: the WebSocket URL of the node the room lives on. */
    readonly url?: string,
  ) {
    super(message);
    this.name = "SignalingError";
  }
}

export function errorCode(error: unknown): ErrorCode {
  return error instanceof SignalingError ? error.code : "internal";
}

/** The WebSocket URL: same origin `/ws`, or the `?ws=` query parameter (development). */
export function signalingUrl(location: Location = window.location): string {
  const override = new URLSearchParams(location.search).get("ws");
  if (override) return override;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${location.host}/ws`;
}

const HEALTH_TIMEOUT_MS = 3_000;

/** The http(s) URL of `path` on the server of a signaling URL. */
function serverUrl(wsUrl: string, path: string): URL {
  const url = new URL(wsUrl);
  url.protocol = url.protocol === "wss:" ? "https:" : "http:";
  url.pathname = path;
  url.search = "";
  return url;
}

/** Whether GET /healthz of the signaling URL's server answers 200. */
async function serverIsUp(wsUrl: string): Promise<boolean> {
  try {
    const health = serverUrl(wsUrl, "/healthz");
    const response = await fetch(health, { cache: "no-store", signal: AbortSignal.timeout(HEALTH_TIMEOUT_MS) });
    return response.ok;
  } catch {
    return false;
  }
}

/**
 * The signaling URLs of the cluster's nodes as `GET /api/cluster` of the signaling URL's server
 * lists them (shared/protocol.md "Cluster"); empty for a single node or when it cannot be read.
 */
export async function clusterSignalingUrls(wsUrl: string): Promise<string[]> {
  try {
    const response = await fetch(serverUrl(wsUrl, "/api/cluster"), {
      cache: "no-store",
      signal: AbortSignal.timeout(HEALTH_TIMEOUT_MS),
    });
    if (!response.ok) return [];
    const body = (await response.json()) as { nodes?: { url?: unknown }[] };
    return (body.nodes ?? [])
      .map((node) => node.url)
      .filter((url): url is string => typeof url === "string" && /^https?:\/\//.test(url))
      .map((url) => `${url.replace(/^http/, "ws").replace(/\/+$/, "")}/ws`);
  } catch {
    return [];
  }
}

type NotificationHandlerArgs = {
  [M in NotificationMethod]: [method: M, data: Notifications[M]];
}[NotificationMethod];

type SignalingEvents = {
  notification: NotificationHandlerArgs;
  /** The socket closed. `expected` is true only after close() was called. */
  close: [{ code: number; reason: string; expected: boolean }];
};

interface Pending {
  resolve: (data: unknown) => void;
  reject: (error: SignalingError) => void;
  timer: ReturnType<typeof setTimeout>;
}

export class Signaling extends Emitter<SignalingEvents> {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private closedByUs = false;
  private isClosed = false;

  private constructor(private readonly socket: WebSocket) {
    super();
    socket.addEventListener("message", (event) => this.onMessage(event));
    socket.addEventListener("close", (event) => this.onClose(event.code, event.reason));
  }

  /**
   * Opens the socket; rejects with `unreachable` when it cannot be opened, or `unauthorized` when
   * the server is up but refused it (a browser only sees the socket fail, not the HTTP 401, so
   * GET /healthz tells the two apart).
   */
  static connect(url: string = signalingUrl()): Promise<Signaling> {
    return new Promise((resolve, reject) => {
      let socket: WebSocket;
      try {
        socket = new WebSocket(url);
      } catch (error) {
        reject(new SignalingError("unreachable", `invalid signaling URL: ${String(error)}`));
        return;
      }
      const fail = (message: string) => {
        cleanup();
        socket.close();
        reject(new SignalingError("unreachable", message));
      };
      const timer = setTimeout(() => fail("timed out connecting to the server"), OPEN_TIMEOUT_MS);
      const onOpen = () => {
        cleanup();
        resolve(new Signaling(socket));
      };
      const onFail = () => {
        cleanup();
        socket.close();
        void serverIsUp(url).then((up) =>
          reject(
            up
              ? new SignalingError("unauthorized", "the server refused the connection")
              : new SignalingError("unreachable", "could not reach the server"),
          ),
        );
      };
      const cleanup = () => {
        clearTimeout(timer);
        socket.removeEventListener("open", onOpen);
        socket.removeEventListener("error", onFail);
        socket.removeEventListener("close", onFail);
      };
      socket.addEventListener("open", onOpen);
      socket.addEventListener("error", onFail);
      socket.addEventListener("close", onFail);
    });
  }

  get closed(): boolean {
    return this.isClosed;
  }

  request<M extends Method>(
    method: M,
    data: RequestData<M>,
    timeoutMs: number = REQUEST_TIMEOUT_MS,
  ): Promise<ResponseData<M>> {
    if (this.isClosed) {
      return Promise.reject(new SignalingError("closed", `${method}: connection closed`));
    }
    const id = this.nextId++;
    return new Promise<ResponseData<M>>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new SignalingError("timeout", `${method}: no response in ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (value) => resolve(value as ResponseData<M>),
        reject,
        timer,
      });
      this.socket.send(JSON.stringify({ request: true, id, method, data }));
    });
  }

  close(): void {
    if (this.isClosed) return;
    this.closedByUs = true;
    this.socket.close(1000, "bye");
    // Settle now rather than waiting for the close handshake.
    this.onClose(1000, "closed by client");
  }

  private onMessage(event: MessageEvent): void {
    if (typeof event.data !== "string") return;
    let message: Record<string, unknown>;
    try {
      message = JSON.parse(event.data) as Record<string, unknown>;
    } catch {
      return;
    }
    if (message.response === true && typeof message.id === "number") {
      const pending = this.pending.get(message.id);
      if (!pending) return;
      this.pending.delete(message.id);
      clearTimeout(pending.timer);
      if (message.ok === true) {
        pending.resolve(message.data ?? {});
      } else {
        const error = (message.error ?? {}) as { code?: ErrorCode; message?: string; url?: unknown };
        const url = typeof error.url === "string" ? error.url : undefined;
        pending.reject(new SignalingError(error.code ?? "internal", error.message ?? "request failed", url));
      }
    } else if (message.notification === true && typeof message.method === "string") {
      this.emit(
        "notification",
        ...([message.method, message.data ?? {}] as NotificationHandlerArgs),
      );
    }
  }

  private onClose(code: number, reason: string): void {
    if (this.isClosed) return;
    this.isClosed = true;
    for (const pending of this.pending.values()) {
      clearTimeout(pending.timer);
      pending.reject(new SignalingError("closed", "connection closed"));
    }
    this.pending.clear();
    this.emit("close", { code, reason, expected: this.closedByUs });
    this.removeAllListeners();
  }
}
