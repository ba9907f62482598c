/**
 * Plays a live HLS stream that may not exist yet: probes the playlist, plays it with hls.js
 * (or the browser's own HLS where MSE is missing, e.g. iOS), and while the room is offline or
 * after a fatal error, tries again every few seconds. A playlist answered 401 or 403 (access on,
 * the token missing or not admitting this room) ends the attempts: retrying cannot fix it.
 * No React.
 */
import type Hls from "hls.js";
import { Emitter } from "./emitter";

/** "unauthorized": the playlist answered 401; "forbidden": 403. */
export type HlsStatus = "connecting" | "live" | "offline" | "unauthorized" | "forbidden";

const RETRY_MS = 3_000;

type PlayerEvents = { status: [HlsStatus] };

export class HlsPlayer extends Emitter<PlayerEvents> {
  private hls: Hls | null = null;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private destroyed = false;
  private current: HlsStatus = "connecting";
  private readonly detachNative: (() => void)[] = [];

  constructor(
    private readonly video: HTMLVideoElement,
    private readonly url: string,
  ) {
    super();
  }

  get status(): HlsStatus {
    return this.current;
  }

  start(): void {
    void this.attempt();
  }

  destroy(): void {
    this.destroyed = true;
    this.teardown();
    this.removeAllListeners();
  }

  private async attempt(): Promise<void> {
    if (this.destroyed) return;
    this.teardown();
    const playlist = await this.probePlaylist();
    if (this.destroyed) return;
    if (playlist === "unauthorized" || playlist === "forbidden") {
      this.setStatus(playlist);
      return;
    }
    if (playlist === "missing") {
      this.setStatus("offline");
      this.scheduleRetry();
      return;
    }
    if (this.destroyed) return;
    const { default: HlsClass } = await import("hls.js");
    if (this.destroyed) return;
    if (HlsClass.isSupported()) {
      this.playWithHlsJs(HlsClass);
    } else if (this.video.canPlayType("application/vnd.apple.mpegurl")) {
      this.playNatively();
    } else {
      this.setStatus("offline");
    }
  }

  private async probePlaylist(): Promise<"ok" | "missing" | "unauthorized" | "forbidden"> {
    try {
      const response = await fetch(this.url, { cache: "no-store" });
      if (response.status === 401) return "unauthorized";
      if (response.status === 403) return "forbidden";
      return response.ok ? "ok" : "missing";
    } catch {
      return "missing";
    }
  }

  private playWithHlsJs(HlsClass: typeof Hls): void {
    const hls = new HlsClass({ lowLatencyMode: true, liveSyncDurationCount: 3, backBufferLength: 30 });
    this.hls = hls;
    hls.on(HlsClass.Events.MANIFEST_PARSED, () => {
      this.video.play().catch(() => undefined);
    });
    hls.on(HlsClass.Events.FRAG_BUFFERED, () => this.setStatus("live"));
    hls.on(HlsClass.Events.ERROR, (_event, data) => {
      if (!data.fatal) return;
      if (data.type === HlsClass.ErrorTypes.MEDIA_ERROR) {
        hls.recoverMediaError();
        return;
      }
      this.setStatus("offline");
      this.scheduleRetry();
    });
    hls.loadSource(this.url);
    hls.attachMedia(this.video);
  }

  private playNatively(): void {
    const video = this.video;
    const onPlaying = () => this.setStatus("live");
    const onError = () => {
      this.setStatus("offline");
      this.scheduleRetry();
    };
    video.addEventListener("playing", onPlaying);
    video.addEventListener("error", onError);
    this.detachNative.push(() => {
      video.removeEventListener("playing", onPlaying);
      video.removeEventListener("error", onError);
    });
    video.src = this.url;
    video.play().catch(() => undefined);
  }

  private scheduleRetry(): void {
    if (this.destroyed || this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (this.current !== "live") this.setStatus("connecting");
      void this.attempt();
    }, RETRY_MS);
  }

  private teardown(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.hls?.destroy();
    this.hls = null;
    for (const detach of this.detachNative.splice(0)) detach();
    if (this.video.getAttribute("src")) {
      this.video.removeAttribute("src");
      this.video.load();
    }
  }

  private setStatus(status: HlsStatus): void {
    if (status === this.current) return;
    this.current = status;
    this.emit("status", status);
  }
}
