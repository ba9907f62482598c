/**
 * Bookkeeping of the other peers in the room: who is there, which producers they have, and
 * which local consumer (if any) receives each producer. Pure state, no I/O.
 */
import type { types } from "mediasoup-client";
import type { MediaKind, PeerInfo, ProducerInfo, ProducerSource } from "./protocol";
import { spatialLayerCount } from "./video-layers";

export interface RemoteProducer {
  producerId: string;
  peerId: string;
  kind: MediaKind;
  source: ProducerSource;
  paused: boolean;
  /** The server stopped this consumer's video: our downlink does not fit even its lowest layer. */
  bandwidthPaused: boolean;
  /** The spatial layer last asked of the server for this consumer (null: not asked yet). */
  preferredSpatialLayer: number | null;
  consumer: types.Consumer | null;
  /** A consume is in flight; guards against consuming one producer twice. */
  consuming: boolean;
}

/** What the UI needs to render one remote media stream. */
export interface RemoteMediaView {
  producerId: string;
  paused: boolean;
  track: MediaStreamTrack | null;
  consumerId: string | null;
  /** Simulcast layers the consumer can choose from (1: not simulcast). */
  spatialLayers: number;
  bandwidthPaused: boolean;
}

export interface RemotePeerView {
  peerId: string;
  displayName: string;
  /** Microphone. */
  audio: RemoteMediaView | null;
  /** Camera. */
  video: RemoteMediaView | null;
  screen: RemoteMediaView | null;
  screenAudio: RemoteMediaView | null;
}

interface RemotePeer {
  peerId: string;
  displayName: string;
  joinedAt: number;
  producers: Map<string, RemoteProducer>;
}

export class RemotePeers {
  private readonly peers = new Map<string, RemotePeer>();
  private readonly producers = new Map<string, RemoteProducer>();
  private joinCounter = 0;

  addPeer({ peerId, displayName }: PeerInfo): void {
    const existing = this.peers.get(peerId);
    if (existing) {
      existing.displayName = displayName || existing.displayName;
      return;
    }
    this.peers.set(peerId, {
      peerId,
      displayName,
      joinedAt: this.joinCounter++,
      producers: new Map(),
    });
  }

  /** Removes a peer and closes the consumers of its producers. */
  removePeer(peerId: string): void {
    const peer = this.peers.get(peerId);
    if (!peer) return;
    for (const producerId of [...peer.producers.keys()]) this.removeProducer(producerId);
    this.peers.delete(peerId);
  }

  /** Records a producer; returns it, or null if it was already known. */
  addProducer(info: ProducerInfo): RemoteProducer | null {
    if (this.producers.has(info.producerId)) return null;
    // A producer can be announced before its peer (e.g. during the join answer).
    if (!this.peers.has(info.peerId)) this.addPeer({ peerId: info.peerId, displayName: "" });
    const producer: RemoteProducer = {
      ...info,
      source: info.source ?? defaultSource(info.kind),
      paused: info.paused ?? false,
      bandwidthPaused: false,
      preferredSpatialLayer: null,
      consumer: null,
      consuming: false,
    };
    this.producers.set(info.producerId, producer);
    this.peers.get(info.peerId)?.producers.set(info.producerId, producer);
    return producer;
  }

  displayName(peerId: string): string {
    return this.peers.get(peerId)?.displayName ?? "";
  }

  producer(producerId: string): RemoteProducer | undefined {
    return this.producers.get(producerId);
  }

  unconsumedProducers(): RemoteProducer[] {
    return [...this.producers.values()].filter((p) => !p.consumer && !p.consuming);
  }

  /** Forgets a producer and closes its consumer. Returns whether anything changed. */
  removeProducer(producerId: string): boolean {
    const producer = this.producers.get(producerId);
    if (!producer) return false;
    producer.consumer?.close();
    producer.consumer = null;
    this.producers.delete(producerId);
    this.peers.get(producer.peerId)?.producers.delete(producerId);
    return true;
  }

  removeByConsumerId(consumerId: string): boolean {
    const producer = this.byConsumerId(consumerId);
    return producer ? this.removeProducer(producer.producerId) : false;
  }

  setPaused(producerId: string, paused: boolean): boolean {
    const producer = this.producers.get(producerId);
    if (!producer || producer.paused === paused) return false;
    producer.paused = paused;
    return true;
  }

  /** The producer our consumer `consumerId` receives. */
  byConsumerId(consumerId: string): RemoteProducer | undefined {
    for (const producer of this.producers.values()) {
      if (producer.consumer?.id === consumerId) return producer;
    }
    return undefined;
  }

  /** From `consumer-layers-changed`; returns whether anything changed. */
  setBandwidthPaused(consumerId: string, paused: boolean): boolean {
    const producer = this.byConsumerId(consumerId);
    if (!producer || producer.bandwidthPaused === paused) return false;
    producer.bandwidthPaused = paused;
    return true;
  }

  /** Closes every consumer and forgets everyone (connection lost or left). */
  clear(): void {
    for (const producer of this.producers.values()) producer.consumer?.close();
    this.producers.clear();
    this.peers.clear();
  }

  views(): RemotePeerView[] {
    return [...this.peers.values()]
      .sort((a, b) => a.joinedAt - b.joinedAt)
      .map((peer) => ({
        peerId: peer.peerId,
        displayName: peer.displayName,
        audio: mediaView(peer, "microphone"),
        video: mediaView(peer, "camera"),
        screen: mediaView(peer, "screen"),
        screenAudio: mediaView(peer, "screen-audio"),
      }));
  }
}

/** What a producer announced without `source` is (servers before source labels). */
function defaultSource(kind: MediaKind): ProducerSource {
  return kind === "audio" ? "microphone" : "camera";
}

/** The newest producer of that source, if a peer has several. */
function mediaView(peer: RemotePeer, source: ProducerSource): RemoteMediaView | null {
  let latest: RemoteProducer | null = null;
  for (const producer of peer.producers.values()) {
    if (producer.source === source) latest = producer;
  }
  if (!latest) return null;
  const consumer = latest.consumer;
  return {
    producerId: latest.producerId,
    paused: latest.paused,
    track: consumer?.track ?? null,
    consumerId: consumer?.id ?? null,
    spatialLayers: consumer ? spatialLayerCount(consumer.rtpParameters) : 1,
    bandwidthPaused: latest.bandwidthPaused,
  };
}
