/**
 * The data channels of the chat for one connection: our own data producer (label `chat`) on the
 * send transport and one data consumer per other peer's chat producer on the recv transport
 * (shared/protocol.md item 12). Owned by RoomSession, closed with its transports.
 */
import type { types } from "mediasoup-client";
import { CHAT_LABEL, CHAT_PROTOCOL, decodeChat, encodeChat } from "./chat";
import type { DataProducerInfo } from "./protocol";
import type { Signaling } from "./signaling";

interface ChatChannelsOptions {
  signaling: Signaling;
  sendTransport: types.Transport;
  recvTransport: types.Transport;
  onMessage: (peerId: string, text: string) => void;
  /** Our producer's channel opened: messages can be sent. */
  onReady: () => void;
}

interface RemoteChat {
  peerId: string;
  consumer: types.DataConsumer | null;
}

export class ChatChannels {
  private producer: types.DataProducer | null = null;
  /** dataProducerId → the consumer receiving it. */
  private readonly remote = new Map<string, RemoteChat>();
  private closed = false;

  constructor(private readonly options: ChatChannelsOptions) {}

  /** Creates our chat producer and consumes the chat producers the room already has. */
  async open(existing: DataProducerInfo[]): Promise<void> {
    for (const info of existing) void this.add(info);
    const producer = await this.options.sendTransport.produceData({
      ordered: true,
      label: CHAT_LABEL,
      protocol: CHAT_PROTOCOL,
    });
    if (this.closed) {
      producer.close();
      return;
    }
    this.producer = producer;
    if (producer.readyState === "open") this.options.onReady();
    else producer.on("open", () => this.options.onReady());
  }

  get ready(): boolean {
    return this.producer !== null && !this.producer.closed && this.producer.readyState === "open";
  }

  /** Sends one already validated message; false when the channel is not open. */
  send(text: string): boolean {
    if (!this.ready || !this.producer) return false;
    this.producer.send(encodeChat(text));
    return true;
  }

  /** Consumes another peer's chat producer (other labels are not ours to read). */
  async add(info: DataProducerInfo): Promise<void> {
    if (this.closed || info.label !== CHAT_LABEL || this.remote.has(info.dataProducerId)) return;
    const entry: RemoteChat = { peerId: info.peerId, consumer: null };
    this.remote.set(info.dataProducerId, entry);
    const { signaling, recvTransport } = this.options;
    try {
      const answer = await signaling.request("consume-data", {
        transportId: recvTransport.id,
        dataProducerId: info.dataProducerId,
      });
      if (this.closed || this.remote.get(info.dataProducerId) !== entry) return;
      const consumer = await recvTransport.consumeData({
        id: answer.dataConsumerId,
        dataProducerId: answer.dataProducerId,
        sctpStreamParameters: answer.sctpStreamParameters,
        label: answer.label,
        protocol: answer.protocol,
      });
      if (this.closed || this.remote.get(info.dataProducerId) !== entry) {
        consumer.close();
        return;
      }
      consumer.binaryType = "arraybuffer";
      consumer.on("message", (data: unknown) => {
        const text = decodeChat(data);
        if (text !== null) this.options.onMessage(entry.peerId, text);
      });
      entry.consumer = consumer;
    } catch (error) {
      if (this.remote.get(info.dataProducerId) === entry) this.remote.delete(info.dataProducerId);
      if (!this.closed) console.warn(`cannot consume chat of ${info.peerId}`, error);
    }
  }

  removeProducer(dataProducerId: string): void {
    const entry = this.remote.get(dataProducerId);
    if (!entry) return;
    entry.consumer?.close();
    this.remote.delete(dataProducerId);
  }

  removeConsumer(dataConsumerId: string): void {
    for (const [dataProducerId, entry] of this.remote) {
      if (entry.consumer?.id === dataConsumerId) this.removeProducer(dataProducerId);
    }
  }

  removePeer(peerId: string): void {
    for (const [dataProducerId, entry] of this.remote) {
      if (entry.peerId === peerId) this.removeProducer(dataProducerId);
    }
  }

  close(): void {
    this.closed = true;
    this.producer?.close();
    this.producer = null;
    for (const entry of this.remote.values()) entry.consumer?.close();
    this.remote.clear();
  }
}
