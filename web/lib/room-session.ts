/**
 * One participant's session in a room: signaling + mediasoup-client Device, a send and a recv
 * transport, local producers and one consumer per remote producer, following shared/protocol.md.
 * Reconnects with backoff (and rejoins) when the WebSocket drops. No React here: the UI
 * subscribes to `change` and renders `snapshot`.
 */
import { Device, type types } from "mediasoup-client";
import { withToken } from "./access-token";
import { Emitter } from "./emitter";
import type { ErrorCode, MediaKind, Notifications, NotificationMethod, ProducerInfo } from "./protocol";
import { RemotePeers, type RemotePeerView } from "./remote-peers";
import { Signaling, SignalingError, errorCode, signalingUrl } from "./signaling";

export type SessionStatus = "idle" | "joining" | "joined" | "reconnecting" | "left" | "failed";

export interface SessionError {
  code: ErrorCode;
  message: string;
}

export interface SessionSnapshot {
  status: SessionStatus;
  error: SessionError | null;
  roomId: string;
  peerId: string | null;
  peers: RemotePeerView[];
  /** "off": no audio producer (listen-only or no mic). */
  mic: "off" | "live" | "muted";
  camera: "off" | "live";
  reconnectAttempt: number;
}

export interface JoinOptions {
  displayName: string;
  audioTrack: MediaStreamTrack | null;
  videoTrack: MediaStreamTrack | null;
  micMuted?: boolean;
  /** e.g. "h264": pick that video codec from the device's capabilities when available. */
  preferredVideoCodec?: string | null;
  url?: string;
  /** Access token (`?token=` of the page), sent as `/ws?token=`. */
  token?: string | null;
}

const MAX_RECONNECT_ATTEMPTS = 10;
const LEAVE_TIMEOUT_MS = 2_000;
/** Errors a retry cannot fix (a refused or expired token stays refused). */
const FATAL_CODES: ReadonlySet<ErrorCode> = new Set(["bad-request", "limit", "forbidden", "unauthorized"]);

class Superseded extends Error {}

/** `?iceTransportPolicy=relay` forces TURN relay candidates (testing a TURN set-up). */
function iceTransportPolicy(): RTCIceTransportPolicy | null {
  if (typeof location === "undefined") return null;
  const value = new URLSearchParams(location.search).get("iceTransportPolicy");
  return value === "relay" || value === "all" ? value : null;
}

type SessionEvents = { change: [SessionSnapshot] };

export class RoomSession extends Emitter<SessionEvents> {
  private options: JoinOptions | null = null;
  private signaling: Signaling | null = null;
  private device: Device | null = null;
  private sendTransport: types.Transport | null = null;
  private recvTransport: types.Transport | null = null;
  private readonly producers: Partial<Record<MediaKind, types.Producer>> = {};
  private readonly localTracks: Record<MediaKind, MediaStreamTrack | null> = { audio: null, video: null };
  private micMuted = false;
  private readonly remote = new RemotePeers();
  /** Bumped on every (re)connect and on leave, so late async results of an old one are dropped. */
  private generation = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private current: SessionSnapshot;

  constructor(readonly roomId: string) {
    super();
    this.current = {
      status: "idle",
      error: null,
      roomId,
      peerId: null,
      peers: [],
      mic: "off",
      camera: "off",
      reconnectAttempt: 0,
    };
  }

  get snapshot(): SessionSnapshot {
    return this.current;
  }

  async join(options: JoinOptions): Promise<void> {
    if (this.current.status === "joining" || this.current.status === "joined") return;
    this.options = options;
    this.localTracks.audio = options.audioTrack;
    this.localTracks.video = options.videoTrack;
    this.micMuted = options.micMuted ?? false;
    this.update({ status: "joining", error: null, reconnectAttempt: 0 });
    try {
      await this.connect();
      this.update({ status: "joined" });
    } catch (error) {
      if (error instanceof Superseded) return;
      this.teardown();
      this.update({ status: "failed", error: toSessionError(error) });
    }
  }

  /** Leaves the room politely (leave-room, then close). Safe to call more than once. */
  async leave(): Promise<void> {
    const signaling = this.signaling;
    this.stop();
    if (signaling && !signaling.closed) {
      await signaling.request("leave-room", {}, LEAVE_TIMEOUT_MS).catch(() => undefined);
    }
    signaling?.close();
  }

  /** Closes everything at once (component unmount); the session can join again later. */
  close(): void {
    const signaling = this.signaling;
    this.stop();
    signaling?.close();
  }

  async setMicMuted(muted: boolean): Promise<void> {
    this.micMuted = muted;
    const producer = this.producers.audio;
    if (!producer || producer.closed) return;
    if (muted) producer.pause();
    else producer.resume();
    this.update({ mic: muted ? "muted" : "live" });
    await this.signaling
      ?.request(muted ? "pause-producer" : "resume-producer", { producerId: producer.id })
      .catch((error: unknown) => console.warn("mic toggle failed", error));
  }

  /** Starts the camera with `track`, or stops it (close-producer) with null. */
  async setCameraTrack(track: MediaStreamTrack | null): Promise<void> {
    this.localTracks.video = track;
    if (track) {
      await this.produce("video", this.generation);
    } else {
      await this.closeProducer("video");
    }
  }

  // ---- connection lifecycle -------------------------------------------------------------

  private async connect(): Promise<void> {
    const options = this.options;
    if (!options) throw new Error("join() first");
    const generation = ++this.generation;
    const check = () => {
      if (generation !== this.generation) throw new Superseded();
    };

    const signaling = await Signaling.connect(withToken(options.url ?? signalingUrl(), options.token ?? null));
    if (generation !== this.generation) {
      signaling.close();
      throw new Superseded();
    }
    this.signaling = signaling;
    signaling.on("notification", (method, data) => this.onNotification(method, data));
    signaling.on("close", ({ expected }) => {
      if (!expected && this.signaling === signaling) this.onConnectionLost();
    });

    const joined = await signaling.request("join-room", {
      roomId: this.roomId,
      displayName: options.displayName || undefined,
    });
    check();
    this.update({ peerId: joined.peerId });
    for (const peer of joined.peers) this.remote.addPeer(peer);
    for (const producer of joined.producers) this.remote.addProducer(producer);
    this.publishPeers();

    const device = new Device();
    await device.load({ routerRtpCapabilities: joined.routerRtpCapabilities });
    check();
    this.device = device;

    this.sendTransport = await this.createTransport("send", generation);
    check();
    this.recvTransport = await this.createTransport("recv", generation);
    check();

    for (const producer of this.remote.unconsumedProducers()) {
      void this.consume(producer.producerId, generation);
    }
    await this.produce("audio", generation);
    await this.produce("video", generation);
  }

  /** The server closed one of our transports: its media is gone, so join again afresh. */
  private onTransportClosed(transportId: string): void {
    const ours = [this.sendTransport, this.recvTransport].some((t) => t?.id === transportId);
    if (ours) this.onConnectionLost();
  }

  private onConnectionLost(): void {
    this.teardown();
    this.update({ status: "reconnecting", reconnectAttempt: 0 });
    this.scheduleReconnect(1);
  }

  private scheduleReconnect(attempt: number): void {
    if (attempt > MAX_RECONNECT_ATTEMPTS) {
      this.update({
        status: "failed",
        error: { code: "closed", message: "Lost the connection to the server." },
      });
      return;
    }
    const delay = Math.min(1000 * 2 ** (attempt - 1), 10_000) + Math.random() * 300;
    this.update({ reconnectAttempt: attempt });
    this.reconnectTimer = setTimeout(async () => {
      this.reconnectTimer = null;
      try {
        await this.connect();
        this.update({ status: "joined", error: null, reconnectAttempt: 0 });
      } catch (error) {
        if (error instanceof Superseded) return;
        this.teardown();
        const sessionError = toSessionError(error);
        if (FATAL_CODES.has(sessionError.code)) {
          this.update({ status: "failed", error: sessionError });
        } else {
          this.scheduleReconnect(attempt + 1);
        }
      }
    }, delay);
  }

  /** Ends this session for good: no more reconnects, no late async results. */
  private stop(): void {
    this.generation++;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.teardown();
    this.update({ status: "left", peerId: null, reconnectAttempt: 0 });
  }

  /** Closes transports, producers and consumers; keeps the local tracks (the UI owns them). */
  private teardown(): void {
    const signaling = this.signaling;
    this.signaling = null;
    if (signaling && !signaling.closed) signaling.close();
    this.remote.clear();
    for (const kind of ["audio", "video"] as const) {
      this.producers[kind]?.close();
      delete this.producers[kind];
    }
    this.sendTransport?.close();
    this.recvTransport?.close();
    this.sendTransport = null;
    this.recvTransport = null;
    this.device = null;
    this.update({ peers: [], mic: "off", camera: "off" });
  }

  // ---- transports -------------------------------------------------------------------------

  private async createTransport(direction: "send" | "recv", generation: number): Promise<types.Transport> {
    const signaling = this.requireSignaling();
    const device = this.device;
    if (!device) throw new Error("device not loaded");
    const info = await signaling.request("create-transport", { direction });
    if (generation !== this.generation) throw new Superseded();
    const options: types.TransportOptions = { ...info, iceServers: info.iceServers ?? [] };
    const policy = iceTransportPolicy();
    if (policy) options.iceTransportPolicy = policy;
    const transport =
      direction === "send" ? device.createSendTransport(options) : device.createRecvTransport(options);

    transport.on("connect", ({ dtlsParameters }, callback, errback) => {
      signaling
        .request("connect-transport", { transportId: transport.id, dtlsParameters })
        .then(() => callback())
        .catch(errback);
    });
    if (direction === "send") {
      transport.on("produce", ({ kind, rtpParameters, appData }, callback, errback) => {
        signaling
          .request("produce", { transportId: transport.id, kind, rtpParameters, appData })
          .then(({ producerId }) => callback({ id: producerId }))
          .catch(errback);
      });
    }
    transport.on("connectionstatechange", (state) => {
      if (state === "failed" && !transport.closed) void this.restartIce(transport);
    });
    return transport;
  }

  private async restartIce(transport: types.Transport): Promise<void> {
    try {
      const { iceParameters } = await this.requireSignaling().request("restart-ice", {
        transportId: transport.id,
      });
      await transport.restartIce({ iceParameters });
    } catch (error) {
      console.warn("restart-ice failed", error);
    }
  }

  // ---- local producers --------------------------------------------------------------------

  private async produce(kind: MediaKind, generation: number): Promise<void> {
    const track = this.localTracks[kind];
    const transport = this.sendTransport;
    const device = this.device;
    if (!track || track.readyState === "ended" || !transport || !device) return;
    if (!device.canProduce(kind)) return;
    await this.closeProducer(kind);

    let producer: types.Producer;
    try {
      producer = await transport.produce({
        track,
        stopTracks: false,
        codec: kind === "video" ? this.preferredVideoCodec(device) : undefined,
        appData: { kind },
      });
    } catch (error) {
      // A token without `publish`: stay in the room, receive only.
      if (errorCode(error) !== "forbidden") throw error;
      console.warn(`not allowed to send ${kind}`);
      return;
    }
    if (generation !== this.generation || this.localTracks[kind] !== track) {
      producer.close();
      return;
    }
    this.producers[kind] = producer;
    producer.on("trackended", () => void this.closeProducer(kind));
    if (kind === "audio") {
      this.update({ mic: this.micMuted ? "muted" : "live" });
      if (this.micMuted) await this.setMicMuted(true);
    } else {
      this.update({ camera: "live" });
    }
  }

  private async closeProducer(kind: MediaKind): Promise<void> {
    const producer = this.producers[kind];
    if (!producer) return;
    delete this.producers[kind];
    producer.close();
    this.update(kind === "audio" ? { mic: "off" } : { camera: "off" });
    await this.signaling
      ?.request("close-producer", { producerId: producer.id })
      .catch((error: unknown) => console.warn("close-producer failed", error));
  }

  private preferredVideoCodec(device: Device): types.RtpCodecCapability | undefined {
    const wanted = this.options?.preferredVideoCodec?.toLowerCase();
    if (!wanted) return undefined;
    return device.sendRtpCapabilities.codecs?.find(
      (codec) => codec.mimeType.toLowerCase() === `video/${wanted}`,
    );
  }

  // ---- remote consumers -------------------------------------------------------------------

  private async consume(producerId: string, generation: number): Promise<void> {
    const producer = this.remote.producer(producerId);
    const transport = this.recvTransport;
    const device = this.device;
    const signaling = this.signaling;
    if (!producer || producer.consumer || producer.consuming) return;
    if (!transport || !device || !signaling) return; // consumed once the transports exist
    producer.consuming = true;
    try {
      const answer = await signaling.request("consume-media", {
        transportId: transport.id,
        producerId,
        rtpCapabilities: device.recvRtpCapabilities,
      });
      if (generation !== this.generation) return;
      const consumer = await transport.consume({
        id: answer.consumerId,
        producerId: answer.producerId,
        kind: answer.kind,
        rtpParameters: answer.rtpParameters,
      });
      // The producer may have gone away while we were asking.
      if (generation !== this.generation || this.remote.producer(producerId) !== producer) {
        consumer.close();
        return;
      }
      producer.consumer = consumer;
      if (answer.producerPaused !== undefined) this.remote.setPaused(producerId, answer.producerPaused);
      this.publishPeers();
      await signaling.request("resume-consumer", { consumerId: consumer.id });
    } catch (error) {
      if (generation !== this.generation) return;
      if (errorCode(error) !== "not-found") console.warn(`cannot consume ${producerId}`, error);
    } finally {
      producer.consuming = false;
    }
  }

  private onNotification<M extends NotificationMethod>(method: M, data: Notifications[M]): void {
    const generation = this.generation;
    switch (method) {
      case "peer-joined":
        this.remote.addPeer(data as Notifications["peer-joined"]);
        break;
      case "peer-left":
        this.remote.removePeer((data as Notifications["peer-left"]).peerId);
        break;
      case "new-producer": {
        const info = data as ProducerInfo;
        if (this.remote.addProducer(info)) void this.consume(info.producerId, generation);
        break;
      }
      case "producer-closed":
        this.remote.removeProducer((data as Notifications["producer-closed"]).producerId);
        break;
      case "consumer-closed":
        this.remote.removeByConsumerId((data as Notifications["consumer-closed"]).consumerId);
        break;
      case "producer-paused":
      case "producer-resumed":
        this.remote.setPaused(
          (data as Notifications["producer-paused"]).producerId,
          method === "producer-paused",
        );
        break;
      case "transport-closed":
        this.onTransportClosed((data as Notifications["transport-closed"]).transportId);
        return;
      case "error":
        console.warn("signaling error", data);
        return;
      default:
        return;
    }
    this.publishPeers();
  }

  // ---- snapshot ---------------------------------------------------------------------------

  private requireSignaling(): Signaling {
    if (!this.signaling) throw new SignalingError("closed", "not connected");
    return this.signaling;
  }

  private publishPeers(): void {
    this.update({ peers: this.remote.views() });
  }

  private update(patch: Partial<SessionSnapshot>): void {
    this.current = { ...this.current, ...patch };
    this.emit("change", this.current);
  }
}

function toSessionError(error: unknown): SessionError {
  if (error instanceof SignalingError) return { code: error.code, message: error.message };
  return { code: "internal", message: error instanceof Error ? error.message : String(error) };
}
