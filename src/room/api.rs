//! The typed contract between the signaling thread, the workers and the rooms: jobs and
//! commands in, answers and notices out. Serde-free: `src/signaling` parses the wire format
//! into these types and turns the answers back into JSON; room code never sees either.

use super::ortc::{MediaKind, RtpCapabilities, RtpParameters};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// A WebSocket connection, as numbered by the edge.
pub type ConnId = u64;

/// Work for the worker that owns `room_id`.
#[derive(Debug)]
pub struct Job {
    pub conn: ConnId,
    pub room_id: Arc<str>,
    pub peer_id: Arc<str>,
    pub kind: JobKind,
}

#[derive(Debug)]
pub enum JobKind {
    /// A request of a joined peer; answered with exactly one `Outbound::Response`.
    Request { req_id: u32, command: Command },
    /// join-room, sent to the room's home worker; `host` is the worker that will own the
    /// peer's transports (the home itself, or another worker the room spans to). The host
    /// answers.
    Join {
        req_id: u32,
        display_name: String,
        host: usize,
    },
    /// The socket closed without leave-room: same as leaving, nobody to answer.
    Disconnected,
    /// Replace the room's HLS taps (plain RTP to loopback); empty stops them.
    SetTaps(Vec<TapTarget>),
    /// Ask the room's video producers for key frames (HLS segment boundaries).
    RequestKeyFrames,
}

impl JobKind {
    /// The request this job must answer, if any.
    pub fn req_id(&self) -> Option<u32> {
        match self {
            JobKind::Request { req_id, .. } | JobKind::Join { req_id, .. } => Some(*req_id),
            _ => None,
        }
    }
}

/// What a joined peer asks of its room (shared/protocol.md's methods after join-room).
#[derive(Debug, Clone)]
pub enum Command {
    CreateTransport {
        direction: TransportDirection,
        /// Whether the transport runs SCTP for data channels (`sctp: true`).
        sctp: bool,
    },
    ConnectTransport {
        transport_id: String,
        dtls: DtlsParameters,
    },
    Produce {
        transport_id: String,
        kind: MediaKind,
        rtp_parameters: RtpParameters,
        label: SourceLabel,
    },
    Consume {
        transport_id: String,
        producer_id: String,
        rtp_capabilities: RtpCapabilities,
    },
    ResumeConsumer {
        consumer_id: String,
    },
    PauseConsumer {
        consumer_id: String,
    },
    PauseProducer {
        producer_id: String,
    },
    ResumeProducer {
        producer_id: String,
    },
    CloseProducer {
        producer_id: String,
    },
    RestartIce {
        transport_id: String,
    },
    SetConsumerPreferredLayers {
        consumer_id: String,
        spatial_layer: u8,
        temporal_layer: Option<u8>,
    },
    LeaveRoom,
    ProduceData {
        transport_id: String,
        stream: SctpStreamParameters,
        label: String,
        protocol: String,
    },
    ConsumeData {
        transport_id: String,
        data_producer_id: String,
    },
    CloseDataProducer {
        data_producer_id: String,
    },
}

/// `sctpStreamParameters` of a data producer or consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SctpStreamParameters {
    pub stream_id: u16,
    pub reliability: crate::rtc::sctp::Reliability,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportDirection {
    Send,
    Recv,
}

/// The DTLS role the browser asked for (`dtlsParameters.role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtlsRoleParam {
    Auto,
    Client,
    Server,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    pub algorithm: String,
    pub value: String,
}

#[derive(Debug, Clone)]
pub struct DtlsParameters {
    pub role: Option<DtlsRoleParam>,
    pub fingerprints: Vec<Fingerprint>,
}

/// What a producer shows (shared/protocol.md: `appData.source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceLabel {
    Camera,
    Microphone,
    Screen,
    ScreenAudio,
}

impl SourceLabel {
    pub fn is_screen(self) -> bool {
        matches!(self, SourceLabel::Screen)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SourceLabel::Camera => "camera",
            SourceLabel::Microphone => "microphone",
            SourceLabel::Screen => "screen",
            SourceLabel::ScreenAudio => "screen-audio",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Camera,
            Self::Microphone,
            Self::Screen,
            Self::ScreenAudio,
        ]
        .into_iter()
        .find(|l| l.as_str() == s)
    }

    /// Without a label: `microphone` for audio, `camera` for video.
    pub fn default_for(kind: MediaKind) -> Self {
        match kind {
            MediaKind::Audio => SourceLabel::Microphone,
            MediaKind::Video => SourceLabel::Camera,
        }
    }
}

/// The answer to a successful request.
#[derive(Debug, Clone)]
pub enum Answer {
    Joined(Box<Joined>),
    TransportCreated(Box<TransportCreated>),
    IceRestarted(IceParameters),
    Produced {
        producer_id: String,
    },
    Consumed(Box<Consumed>),
    DataProduced {
        data_producer_id: String,
    },
    DataConsumed(Box<DataConsumed>),
    /// Nothing to say beyond success.
    Done,
}

#[derive(Debug, Clone)]
pub struct Joined {
    pub peer_id: Arc<str>,
    pub router_rtp_capabilities: RtpCapabilities,
    pub peers: Vec<PeerSummary>,
    pub producers: Vec<ProducerSummary>,
    pub data_producers: Vec<DataProducerSummary>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataProducerSummary {
    pub data_producer_id: String,
    pub peer_id: Arc<str>,
    pub label: String,
    pub protocol: String,
}

/// What `recvTransport.consumeData()` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataConsumed {
    pub data_consumer_id: String,
    pub data_producer_id: String,
    /// The stream the server chose on the consumer's transport.
    pub stream: SctpStreamParameters,
    pub label: String,
    pub protocol: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSummary {
    pub peer_id: Arc<str>,
    pub display_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerSummary {
    pub producer_id: String,
    pub peer_id: Arc<str>,
    pub kind: MediaKind,
    pub label: SourceLabel,
    pub paused: bool,
}

/// ICE-lite credentials of a transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceParameters {
    pub username_fragment: String,
    pub password: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CandidateProtocol {
    Udp,
    /// Passive ICE-TCP (RFC 6544 `tcptype passive`, RFC 4571 framing).
    Tcp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceCandidate {
    pub foundation: &'static str,
    pub priority: u32,
    pub address: SocketAddr,
    pub protocol: CandidateProtocol,
}

#[derive(Debug, Clone)]
pub struct TransportCreated {
    pub id: String,
    pub ice: IceParameters,
    pub candidates: Vec<IceCandidate>,
    /// The worker certificate's SHA-256 fingerprint (our DTLS role is always `auto`).
    pub sha256_fingerprint: String,
    /// TURN servers with short-lived credentials for this peer (room/turn.rs); empty when
    /// TURN is not configured.
    pub ice_servers: Vec<IceServer>,
    /// Whether the answer carries `sctpParameters` (create-transport with `sctp: true`).
    pub sctp: bool,
}

/// One `iceServers` entry (RTCIceServer) with TURN REST-API credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct IceServer {
    pub urls: Vec<String>,
    /// `"<unix expiry>:<peerId>"`.
    pub username: String,
    /// base64(HMAC-SHA1(secret, username)); redacted in `Debug`.
    pub credential: String,
}

impl std::fmt::Debug for IceServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IceServer")
            .field("urls", &self.urls)
            .field("username", &self.username)
            .field("credential", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct Consumed {
    pub consumer_id: String,
    pub producer_id: String,
    /// Who publishes the producer, and what it shows (`appData` of the answer).
    pub peer_id: Arc<str>,
    pub label: SourceLabel,
    pub kind: MediaKind,
    pub rtp_parameters: RtpParameters,
    pub producer_paused: bool,
}

/// A notification to one peer: something changed in its room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    PeerJoined {
        peer_id: Arc<str>,
        display_name: String,
    },
    PeerLeft {
        peer_id: Arc<str>,
    },
    NewProducer {
        producer_id: String,
        peer_id: Arc<str>,
        kind: MediaKind,
        label: SourceLabel,
    },
    ProducerClosed {
        producer_id: String,
    },
    ProducerPaused {
        producer_id: String,
    },
    ProducerResumed {
        producer_id: String,
    },
    ConsumerClosed {
        consumer_id: String,
    },
    /// The layer a consumer now receives; `None`: its video is paused because the subscriber's
    /// bandwidth does not fit even the lowest layer (it resumes with another notice).
    ConsumerLayersChanged {
        consumer_id: String,
        spatial_layer: Option<usize>,
        temporal_layer: Option<u8>,
    },
    /// Dynacast (extra to protocol.md, docs/architecture.md): the highest spatial layer any
    /// subscriber needs of the peer's own simulcast producer now.
    ProducerMaxSpatialLayer {
        producer_id: String,
        spatial_layer: usize,
    },
    /// The server closed one of the peer's transports on its own (extra to protocol.md).
    TransportClosed {
        transport_id: String,
    },
    /// The room failed on the server; the peer is out of it and may join again.
    RoomFailed,
    /// The room's dominant speaker changed; `None`: nobody has spoken for a while.
    ActiveSpeaker {
        peer_id: Option<Arc<str>>,
        producer_id: Option<String>,
    },
    NewDataProducer(DataProducerSummary),
    DataProducerClosed {
        data_producer_id: String,
    },
    DataConsumerClosed {
        data_consumer_id: String,
    },
}

/// Messages from a worker to the signaling thread.
#[derive(Debug)]
pub enum Outbound {
    Response {
        conn: ConnId,
        req_id: u32,
        result: Result<Answer, ApiError>,
    },
    Notify {
        conn: ConnId,
        notice: Notice,
    },
    /// The producers of a room changed (for the HLS pipeline).
    RoomSources {
        room_id: String,
        sources: Vec<MediaSource>,
    },
    /// The room is gone from its home worker (and so from every worker): the signaling
    /// thread may place its next join anywhere.
    RoomClosed {
        room_id: Arc<str>,
    },
    /// A peer was removed by the worker on its own (its room failed): forget it.
    PeerGone {
        conn: ConnId,
        room_id: Arc<str>,
        peer_id: Arc<str>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BadRequest,
    NotFound,
    InvalidState,
    Unsupported,
    Limit,
    /// The access token does not grant it (shared/protocol.md "Access").
    Forbidden,
    /// Cluster: the room lives on another node (`ApiError::url` is its WebSocket URL).
    Moved,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad-request",
            ErrorCode::NotFound => "not-found",
            ErrorCode::InvalidState => "invalid-state",
            ErrorCode::Unsupported => "unsupported",
            ErrorCode::Limit => "limit",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Moved => "moved",
            ErrorCode::Internal => "internal",
        }
    }
}

/// The one error type every layer maps into before it goes on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// `moved` only: the WebSocket URL of the node the client should join on.
    pub url: Option<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            url: None,
        }
    }
    /// `moved`: the room lives on the node at `url` (a WebSocket URL).
    pub fn moved(url: String, message: impl Into<String>) -> Self {
        Self {
            url: Some(url),
            ..Self::new(ErrorCode::Moved, message)
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    pub fn invalid_state(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidState, message)
    }
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unsupported, message)
    }
    pub fn limit(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Limit, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<super::ortc::OrtcError> for ApiError {
    fn from(e: super::ortc::OrtcError) -> Self {
        use super::ortc::OrtcError;
        match e {
            OrtcError::BadRequest(m) => ApiError::bad_request(m),
            OrtcError::Unsupported(m) => ApiError::unsupported(m),
            OrtcError::Limit(m) => ApiError::limit(m),
        }
    }
}

/// Audio or video, as the HLS pipeline sees a source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceKind {
    Audio,
    Video,
}

/// One producer of a room as the worker describes it to the HLS pipeline.
#[derive(Clone, Debug, PartialEq)]
pub struct MediaSource {
    pub producer_id: String,
    pub peer_id: String,
    pub kind: SourceKind,
    /// `"video/VP8"`, `"video/VP9"`, `"video/H264"`, `"audio/opus"`.
    pub mime_type: String,
    pub clock_rate: u32,
    pub channels: Option<u8>,
    /// Codec parameters, e.g. `packetization-mode=1`, `profile-level-id=42e01f`.
    pub fmtp: Vec<(String, String)>,
    /// A paused producer sends nothing, so it is left out of the pipeline (a silent input would
    /// stall FFmpeg's filter graph).
    pub paused: bool,
    /// When the producer's last media packet arrived (`None`: never, or not sending now).
    /// Sources that stopped sending are left out like paused ones.
    pub last_packet_at: Option<Instant>,
}

/// Where the worker must send one producer's RTP, rewritten to this payload type and SSRC.
#[derive(Clone, Debug, PartialEq)]
pub struct TapTarget {
    pub producer_id: String,
    /// `127.0.0.1:port`.
    pub dest: SocketAddr,
    pub payload_type: u8,
    pub ssrc: u32,
}
