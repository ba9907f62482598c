/**
 * One participant's session in a room: signaling + mediasoup-client Device, a send and a recv
 * transport, local producers and one consumer per remote producer, following shared/protocol.md.
 * Reconnects with backoff (and rejoins) when the WebSocket drops. No React here: the UI
 * subscribes to `change` and renders `snapshot`.
 */
import { Device, type types } from "mediasoup-client";
import { withToken } from "./access-token";
import { MAX_CHAT_HISTORY, chatTextProblem, type ChatMessage, type ChatStatus } from "./chat";
import { ChatChannels } from "./chat-channels";
import { Emitter } from "./emitter";
import type {
  DataProducerInfo,
  ErrorCode,
  MediaKind,
  Notifications,
  NotificationMethod,
  ProducerInfo,
  ProducerSource,
  ResponseData,
} from "./protocol";
import { RemotePeers, type RemotePeerView } from "./remote-peers";
import { Signaling, SignalingError, clusterSignalingUrls, errorCode, signalingUrl } from "./signaling";
import { cameraSendOptions } from "./video-layers";

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
  screen: "off" | "live";
  /** The room's dominant speaker (our own peerId when it is us), from `active-speaker`. */
  activeSpeakerId: string | null;
  chat: { status: ChatStatus; messages: ChatMessage[] };
  reconnectAttempt: number;
}

/** What this client sends. */
type LocalSource = Extract<ProducerSource, "microphone" | "camera" | "screen">;
const LOCAL_SOURCES: readonly LocalSource[] = ["microphone", "camera", "screen"];
const KIND_OF: Record<LocalSource, MediaKind> = { microphone: "audio", camera: "video", screen: "video" };

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
/** `moved` answers followed in a row before a join gives up (nodes disagreeing, briefly). */
const MAX_MOVES = 3;
const MAX_PENDING_DATA_PRODUCERS = 256;
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
  private readonly producers: Partial<Record<LocalSource, types.Producer>> = {};
  private readonly localTracks: Record<LocalSource, MediaStreamTrack | null> = {
    microphone: null,
    camera: null,
    screen: null,
  };
  private chat: ChatChannels | null = null;
  /** Chat producers announced before our chat channels exist (between join and transports). */
  private pendingDataProducers: DataProducerInfo[] = [];
  private chatMessageCounter = 0;
  private micMuted = false;
  private readonly remote = new RemotePeers();
  /** Layer requests are an optimisation: a failing one is logged once, never shown. */
  private layerRequestWarned = false;
  /** Bumped on every (re)connect and on leave, so late async results of an old one are dropped. */
  private generation = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  /** Cluster: the other nodes' signaling URLs, tried in turn when the entry does not answer. */
  private clusterUrls: string[] = [];
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
      screen: "off",
      activeSpeakerId: null,
      chat: { status: "connecting", messages: [] },
      reconnectAttempt: 0,
    };
  }

  get snapshot(): SessionSnapshot {
    return this.current;
  }

  async join(options: JoinOptions): Promise<void> {
    if (this.current.status === "joining" || this.current.status === "joined") return;
    this.options = options;
    this.localTracks.microphone = options.audioTrack;
    this.localTracks.camera = options.videoTrack;
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
    const producer = this.producers.microphone;
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
    this.localTracks.camera = track;
    if (track) {
      await this.produce("camera", this.generation);
    } else {
      await this.closeProducer("camera");
    }
  }

  /**
   * Shares `track` (a getDisplayMedia video track; the session owns it from here and stops it
   * when sharing ends, also when the browser's own "stop sharing" ends the track).
   */
  async startScreenShare(track: MediaStreamTrack): Promise<void> {
    this.localTracks.screen?.stop();
    this.localTracks.screen = track;
    track.addEventListener("ended", () => {
      if (this.localTracks.screen === track) void this.stopScreenShare();
    });
    try {
      await this.produce("screen", this.generation);
    } catch (error) {
      await this.stopScreenShare();
      throw error;
    }
  }

  async stopScreenShare(): Promise<void> {
    const track = this.localTracks.screen;
    this.localTracks.screen = null;
    track?.stop();
    this.update({ screen: "off" });
    await this.closeProducer("screen");
  }

  /**
   * Asks the server for `spatialLayer` of a simulcast consumer (a tile's size changed); only
   * when it differs from the last ask. An arrow property: tiles keep one identity for it.
   */
  readonly setPreferredSpatialLayer = (consumerId: string, spatialLayer: number): void => {
    const producer = this.remote.byConsumerId(consumerId);
    const signaling = this.signaling;
    if (!producer || !signaling || producer.preferredSpatialLayer === spatialLayer) return;
    producer.preferredSpatialLayer = spatialLayer;
    signaling.request("set-consumer-preferred-layers", { consumerId, spatialLayer }).catch((error: unknown) => {
      if (this.layerRequestWarned || errorCode(error) === "closed") return;
      this.layerRequestWarned = true;
      console.warn("set-consumer-preferred-layers failed (further failures not logged)", error);
    });
  };

  /** Sends a chat message; returns why not when it cannot be sent (too long, chat not open). */
  sendChat(text: string): string | null {
    const problem = chatTextProblem(text);
    if (problem) return problem;
    if (!this.chat?.send(text)) return "chat is not connected";
    this.addChatMessage(null, this.options?.displayName ?? "", text);
    return null;
  }

  // ---- connection lifecycle -------------------------------------------------------------

  /**
   * Joins through the entry URL (`attempt` 0), or on a reconnect through the entry and the
   * cluster's other nodes in turn, following `moved` to the node the room lives on.
   */
  private async connect(attempt = 0): Promise<void> {
    const options = this.options;
    if (!options) throw new Error("join() first");
    const generation = ++this.generation;
    const check = () => {
      if (generation !== this.generation) throw new Superseded();
    };

    const entry = options.url ?? signalingUrl();
    const candidates = [entry, ...this.clusterUrls.filter((url) => url !== entry)];
    let url = candidates[attempt % candidates.length] ?? entry;
    let signaling: Signaling;
    let joined: ResponseData<"join-room">;
    for (let moves = 0; ; moves++) {
      signaling = await Signaling.connect(withToken(url, options.token ?? null));
      if (generation !== this.generation) {
        signaling.close();
        throw new Superseded();
      }
      this.signaling = signaling;
      const current = signaling;
      signaling.on("notification", (method, data) => this.onNotification(method, data));
      signaling.on("close", ({ expected }) => {
        if (!expected && this.signaling === current) this.onConnectionLost();
      });
      try {
        joined = await signaling.request("join-room", {
          roomId: this.roomId,
          displayName: options.displayName || undefined,
        });
        break;
      } catch (error) {
        if (!(error instanceof SignalingError && error.code === "moved" && error.url && moves < MAX_MOVES)) {
          throw error;
        }
        signaling.close();
        check();
        url = error.url;
      }
    }
    check();
    // The other nodes, for a reconnect when the entry is gone (with access on, /api/* needs an
    // admin token: the entry, usually a load balancer, is all there is).
    if (!options.token) {
      void clusterSignalingUrls(entry).then((urls) => {
        if (urls.length > 0) this.clusterUrls = urls;
      });
    }
    this.update({ peerId: joined.peerId });
    for (const peer of joined.peers) this.remote.addPeer(peer);
    for (const producer of joined.producers) this.remote.addProducer(producer);
    this.publishPeers();

    const device = new Device();
    await device.load({ routerRtpCapabilities: joined.routerRtpCapabilities });
    check();
    this.device = device;

    const send = await this.createTransport("send", generation);
    this.sendTransport = send.transport;
    check();
    const recv = await this.createTransport("recv", generation);
    this.recvTransport = recv.transport;
    check();

    for (const producer of this.remote.unconsumedProducers()) {
      void this.consume(producer.producerId, generation);
    }
    if (send.sctp && recv.sctp) {
      const existing = [...(joined.dataProducers ?? []), ...this.pendingDataProducers];
      this.pendingDataProducers = [];
      void this.openChat(signaling, existing, generation);
    } else {
      this.updateChat({ status: "unavailable" });
    }
    await this.produce("microphone", generation);
    await this.produce("camera", generation);
    await this.produce("screen", generation);
  }

  private async openChat(signaling: Signaling, existing: DataProducerInfo[], generation: number): Promise<void> {
    const { sendTransport, recvTransport } = this;
    if (!sendTransport || !recvTransport) return;
    const chat = new ChatChannels({
      signaling,
      sendTransport,
      recvTransport,
      onMessage: (peerId, text) => {
        if (generation === this.generation) this.addChatMessage(peerId, this.remote.displayName(peerId), text);
      },
      onReady: () => {
        if (generation === this.generation) this.updateChat({ status: "ready" });
      },
    });
    this.chat = chat;
    try {
      await chat.open(existing);
    } catch (error) {
      if (generation !== this.generation) return;
      // e.g. a token without the `data` grant: the call goes on without chat.
      console.warn("chat unavailable", error);
      chat.close();
      if (this.chat === chat) this.chat = null;
      this.updateChat({ status: "unavailable" });
    }
  }

  private addChatMessage(peerId: string | null, senderName: string, text: string): void {
    const message: ChatMessage = {
      seq: ++this.chatMessageCounter,
      peerId,
      senderName,
      text,
      at: Date.now(),
    };
    const messages = [...this.current.chat.messages, message].slice(-MAX_CHAT_HISTORY);
    this.updateChat({ messages });
  }

  private updateChat(patch: Partial<SessionSnapshot["chat"]>): void {
    this.update({ chat: { ...this.current.chat, ...patch } });
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
    const delay = Math.min(1000 * 1.5 ** (attempt - 1), 10_000) + Math.random() * 300;
    this.update({ reconnectAttempt: attempt });
    this.reconnectTimer = setTimeout(async () => {
      this.reconnectTimer = null;
      try {
        await this.connect(attempt - 1);
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
    this.localTracks.screen?.stop();
    this.localTracks.screen = null;
    this.update({ status: "left", peerId: null, reconnectAttempt: 0 });
  }

  /** Closes transports, producers and consumers; keeps the local tracks (the UI owns them). */
  private teardown(): void {
    const signaling = this.signaling;
    this.signaling = null;
    if (signaling && !signaling.closed) signaling.close();
    this.remote.clear();
    this.chat?.close();
    this.chat = null;
    this.pendingDataProducers = [];
    for (const source of LOCAL_SOURCES) {
      this.producers[source]?.close();
      delete this.producers[source];
    }
    this.sendTransport?.close();
    this.recvTransport?.close();
    this.sendTransport = null;
    this.recvTransport = null;
    this.device = null;
    this.update({
      peers: [],
      mic: "off",
      camera: "off",
      screen: "off",
      activeSpeakerId: null,
      chat: { ...this.current.chat, status: "connecting" },
    });
  }

  // ---- transports -------------------------------------------------------------------------

  /** `sctp`: the server gave it data channels (older servers ignore `sctp: true`). */
  private async createTransport(
    direction: "send" | "recv",
    generation: number,
  ): Promise<{ transport: types.Transport; sctp: boolean }> {
    const signaling = this.requireSignaling();
    const device = this.device;
    if (!device) throw new Error("device not loaded");
    const info = await signaling.request("create-transport", { direction, sctp: true });
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
      transport.on("producedata", ({ sctpStreamParameters, label, protocol, appData }, callback, errback) => {
        signaling
          .request("produce-data", {
            transportId: transport.id,
            sctpStreamParameters,
            label: label ?? "",
            protocol: protocol ?? "",
            appData,
          })
          .then(({ dataProducerId }) => callback({ id: dataProducerId }))
          .catch(errback);
      });
    }
    transport.on("connectionstatechange", (state) => {
      if (state === "failed" && !transport.closed) void this.restartIce(transport);
    });
    return { transport, sctp: info.sctpParameters !== undefined };
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

  private async produce(source: LocalSource, generation: number): Promise<void> {
    const kind = KIND_OF[source];
    const track = this.localTracks[source];
    const transport = this.sendTransport;
    const device = this.device;
    if (!track || track.readyState === "ended" || !transport || !device) return;
    if (!device.canProduce(kind)) return;
    await this.closeProducer(source);

    let producer: types.Producer;
    try {
      producer = await transport.produce({
        track,
        stopTracks: false,
        codec: kind === "video" ? this.preferredVideoCodec(device) : undefined,
        // The camera in three simulcast layers, so each subscriber gets what its link and tile
        // fit; a shared screen stays one full-resolution encoding, or its text would blur.
        ...(source === "camera" ? cameraSendOptions(device.handlerName) : {}),
        appData: { source },
      });
    } catch (error) {
      // A token without `publish`: stay in the room, receive only.
      if (errorCode(error) !== "forbidden") throw error;
      console.warn(`not allowed to send ${kind}`);
      return;
    }
    if (generation !== this.generation || this.localTracks[source] !== track) {
      producer.close();
      return;
    }
    this.producers[source] = producer;
    producer.on("trackended", () => void this.closeProducer(source));
    if (source === "microphone") {
      this.update({ mic: this.micMuted ? "muted" : "live" });
      if (this.micMuted) await this.setMicMuted(true);
    } else {
      this.update(source === "camera" ? { camera: "live" } : { screen: "live" });
    }
  }

  private async closeProducer(source: LocalSource): Promise<void> {
    const producer = this.producers[source];
    if (!producer) return;
    delete this.producers[source];
    producer.close();
    this.update(source === "microphone" ? { mic: "off" } : source === "camera" ? { camera: "off" } : { screen: "off" });
    await this.signaling
      ?.request("close-producer", { producerId: producer.id })
      .catch((error: unknown) => console.warn("close-producer failed", error));
  }

  /** Dynacast: no subscriber needs our layers above `spatialLayer`, so stop encoding them. */
  private setMaxSpatialLayer({ producerId, spatialLayer }: Notifications["producer-max-spatial-layer"]): void {
    if (!Number.isInteger(spatialLayer) || spatialLayer < 0) return;
    const producer = Object.values(this.producers).find((p) => p.id === producerId);
    if (!producer || producer.closed || producer.kind !== "video") return;
    producer.setMaxSpatialLayer(spatialLayer).catch((error: unknown) => {
      console.warn(`setMaxSpatialLayer(${spatialLayer}) failed`, error);
    });
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
      case "peer-left": {
        const { peerId } = data as Notifications["peer-left"];
        this.remote.removePeer(peerId);
        this.chat?.removePeer(peerId);
        if (this.current.activeSpeakerId === peerId) this.update({ activeSpeakerId: null });
        break;
      }
      case "active-speaker": {
        const { peerId } = data as Notifications["active-speaker"];
        this.update({ activeSpeakerId: typeof peerId === "string" ? peerId : null });
        return;
      }
      case "new-data-producer":
        if (this.chat) void this.chat.add(data as DataProducerInfo);
        else if (this.pendingDataProducers.length < MAX_PENDING_DATA_PRODUCERS) {
          this.pendingDataProducers.push(data as DataProducerInfo);
        }
        return;
      case "data-producer-closed": {
        const { dataProducerId } = data as Notifications["data-producer-closed"];
        this.chat?.removeProducer(dataProducerId);
        this.pendingDataProducers = this.pendingDataProducers.filter((p) => p.dataProducerId !== dataProducerId);
        return;
      }
      case "data-consumer-closed":
        this.chat?.removeConsumer((data as Notifications["data-consumer-closed"]).dataConsumerId);
        return;
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
      case "consumer-layers-changed": {
        const { consumerId, spatialLayer } = data as Notifications["consumer-layers-changed"];
        if (!this.remote.setBandwidthPaused(consumerId, spatialLayer === null)) return;
        break;
      }
      case "producer-max-spatial-layer":
        this.setMaxSpatialLayer(data as Notifications["producer-max-spatial-layer"]);
        return;
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
