/**
 * Wire types of the signaling protocol (shared/protocol.md). Parameter objects are
 * mediasoup-client's own types, so nothing is translated between the wire and the Device.
 */
import type { types } from "mediasoup-client";

export const ROOM_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

export function isValidRoomId(roomId: string): boolean {
  return ROOM_ID_PATTERN.test(roomId);
}

export type MediaKind = "audio" | "video";

/** Codes the server sends, plus the ones this client raises itself. */
export type ErrorCode =
  | "bad-request"
  | "not-found"
  | "invalid-state"
  | "unsupported"
  | "limit"
  | "internal"
  /** The token does not admit this (another room, or no publish/subscribe grant). */
  | "forbidden"
  /** Cluster: the room lives on another node; the error's `url` is that node's WebSocket. */
  | "moved"
  // client-side
  | "timeout"
  | "closed"
  | "unreachable"
  /** The server is up (GET /healthz answers) but refused the WebSocket: access is on and the
   * token is missing or not accepted. */
  | "unauthorized";

export interface PeerInfo {
  peerId: string;
  displayName: string;
}

/** What a producer shows (`appData.source` of produce). */
export type ProducerSource = "camera" | "microphone" | "screen" | "screen-audio";

export interface ProducerInfo {
  producerId: string;
  peerId: string;
  kind: MediaKind;
  source?: ProducerSource;
  /** In join-room answers: the producer is paused right now. */
  paused?: boolean;
}

export interface TransportInfo {
  id: string;
  iceParameters: types.IceParameters;
  iceCandidates: types.IceCandidate[];
  dtlsParameters: types.DtlsParameters;
  /** TURN servers with short-lived credentials, when the server has TURN configured. */
  iceServers?: RTCIceServer[];
  /** Only when the transport was created with `sctp: true` (data channels). */
  sctpParameters?: types.SctpParameters;
}

/** A live data producer (`new-data-producer`, join-room's `dataProducers[]`). */
export interface DataProducerInfo {
  dataProducerId: string;
  peerId: string;
  label: string;
  protocol: string;
}

type Empty = Record<string, never>;

/** method → [request data, response data] */
export interface Requests {
  "join-room": [
    { roomId: string; displayName?: string },
    {
      peerId: string;
      routerRtpCapabilities: types.RtpCapabilities;
      peers: PeerInfo[];
      producers: ProducerInfo[];
      dataProducers?: DataProducerInfo[];
    },
  ];
  "create-transport": [{ direction: "send" | "recv"; sctp?: boolean }, TransportInfo];
  "connect-transport": [{ transportId: string; dtlsParameters: types.DtlsParameters }, Empty];
  produce: [
    {
      transportId: string;
      kind: MediaKind;
      rtpParameters: types.RtpParameters;
      appData?: types.AppData;
    },
    { producerId: string },
  ];
  "consume-media": [
    { transportId: string; producerId: string; rtpCapabilities: types.RtpCapabilities },
    {
      consumerId: string;
      producerId: string;
      kind: MediaKind;
      rtpParameters: types.RtpParameters;
      appData?: { source: ProducerSource; peerId: string };
      producerPaused?: boolean;
    },
  ];
  "resume-consumer": [{ consumerId: string }, Empty];
  "pause-consumer": [{ consumerId: string }, Empty];
  "pause-producer": [{ producerId: string }, Empty];
  "resume-producer": [{ producerId: string }, Empty];
  "close-producer": [{ producerId: string }, Empty];
  "restart-ice": [{ transportId: string }, { iceParameters: types.IceParameters }];
  "set-consumer-preferred-layers": [
    { consumerId: string; spatialLayer: number; temporalLayer?: number },
    Empty,
  ];
  "leave-room": [Empty, Empty];
  "produce-data": [
    {
      transportId: string;
      sctpStreamParameters: types.SctpStreamParameters;
      label?: string;
      protocol?: string;
      appData?: types.AppData;
    },
    { dataProducerId: string },
  ];
  "consume-data": [
    { transportId: string; dataProducerId: string },
    {
      dataConsumerId: string;
      dataProducerId: string;
      sctpStreamParameters: types.SctpStreamParameters;
      label: string;
      protocol: string;
    },
  ];
  "close-data-producer": [{ dataProducerId: string }, Empty];
}

export type Method = keyof Requests;
export type RequestData<M extends Method> = Requests[M][0];
export type ResponseData<M extends Method> = Requests[M][1];

export interface Notifications {
  "peer-joined": PeerInfo;
  "peer-left": { peerId: string };
  "new-producer": ProducerInfo;
  "producer-closed": { producerId: string };
  "producer-paused": { producerId: string };
  "producer-resumed": { producerId: string };
  "consumer-closed": { consumerId: string };
  /** `spatialLayer: null`: the server paused this consumer's video, the subscriber's bandwidth
   * does not fit even the lowest layer. */
  "consumer-layers-changed": {
    consumerId: string;
    spatialLayer: number | null;
    temporalLayer: number | null;
  };
  /** Dynacast: the highest spatial layer any subscriber needs of our producer right now. */
  "producer-max-spatial-layer": { producerId: string; spatialLayer: number };
  /** The room's dominant speaker changed; `peerId: null` when nobody spoke for a while. */
  "active-speaker": { peerId: string | null; producerId?: string | null };
  "new-data-producer": DataProducerInfo;
  "data-producer-closed": { dataProducerId: string };
  "data-consumer-closed": { dataConsumerId: string };
  /** Extra to shared/protocol.md: the server closed one of our transports (its DTLS ended, or
   * handling its packets failed). */
  "transport-closed": { transportId: string };
  error: { code: ErrorCode; message: string };
}

export type NotificationMethod = keyof Notifications;
