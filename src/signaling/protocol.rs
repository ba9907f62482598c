//! The wire protocol of shared/protocol.md: envelopes, typed requests, error codes.
//!
//! Everything here is validation at the edge: a request that reaches a worker has a known
//! method, fields of the right types and bounded sizes. Deep checks of RTP parameters against
//! the router's capabilities happen in `room::ortc`.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

/// Longest id (room, peer, transport, producer, consumer) accepted from a client.
pub const MAX_ID_LEN: usize = 64;
/// Longest display name accepted (in characters).
pub const MAX_DISPLAY_NAME: usize = 64;

pub use crate::room::api::{ApiError, ErrorCode};

/// A decoded text frame.
#[derive(Debug)]
pub enum Frame {
    Request {
        id: u32,
        method: String,
        data: Value,
    },
    /// Not JSON or no usable id: answered with an `error` notification.
    Invalid(String),
}

pub fn parse_frame(text: &str) -> Frame {
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return Frame::Invalid(format!("frame is not valid JSON: {e}")),
    };
    let Value::Object(mut obj) = value else {
        return Frame::Invalid("frame must be a JSON object".into());
    };
    if obj.get("request") != Some(&Value::Bool(true)) {
        return Frame::Invalid("frame is not a request (expected \"request\": true)".into());
    }
    let id = match obj.get("id").and_then(Value::as_u64) {
        Some(id) if id <= u64::from(u32::MAX) => id as u32,
        _ => return Frame::Invalid("request has no usable \"id\" (a u32)".into()),
    };
    let method = match obj.remove("method") {
        Some(Value::String(m)) => m,
        // Has an id, so it can be answered with a typed error response.
        _ => String::new(),
    };
    let data = obj.remove("data").unwrap_or_else(|| json!({}));
    Frame::Request { id, method, data }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Send,
    Recv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Audio,
    Video,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Audio => "audio",
            Kind::Video => "video",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DtlsRole {
    Auto,
    Client,
    Server,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DtlsFingerprint {
    pub algorithm: String,
    pub value: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DtlsParameters {
    #[serde(default)]
    pub role: Option<DtlsRole>,
    pub fingerprints: Vec<DtlsFingerprint>,
}

/// A validated request. Parameter objects that `room::ortc` checks in depth stay JSON here.
#[derive(Debug, Clone)]
pub enum Request {
    JoinRoom {
        room_id: String,
        display_name: String,
    },
    CreateTransport {
        direction: Direction,
        sctp: bool,
    },
    ConnectTransport {
        transport_id: String,
        dtls_parameters: DtlsParameters,
    },
    Produce {
        transport_id: String,
        kind: Kind,
        rtp_parameters: Value,
        app_data: Value,
    },
    ConsumeMedia {
        transport_id: String,
        producer_id: String,
        rtp_capabilities: Value,
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
        sctp_stream_parameters: SctpStreamParameters,
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

/// Longest data-channel `label` / `protocol` accepted (bytes).
pub const MAX_DATA_LABEL: usize = 256;

/// mediasoup-client's `SctpStreamParameters` of a produce-data request.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SctpStreamParameters {
    pub stream_id: u16,
    #[serde(default)]
    pub ordered: Option<bool>,
    #[serde(default)]
    pub max_packet_life_time: Option<u16>,
    #[serde(default)]
    pub max_retransmits: Option<u16>,
}

impl Request {
    pub fn method(&self) -> &'static str {
        match self {
            Request::JoinRoom { .. } => "join-room",
            Request::CreateTransport { .. } => "create-transport",
            Request::ConnectTransport { .. } => "connect-transport",
            Request::Produce { .. } => "produce",
            Request::ConsumeMedia { .. } => "consume-media",
            Request::ResumeConsumer { .. } => "resume-consumer",
            Request::PauseConsumer { .. } => "pause-consumer",
            Request::PauseProducer { .. } => "pause-producer",
            Request::ResumeProducer { .. } => "resume-producer",
            Request::CloseProducer { .. } => "close-producer",
            Request::RestartIce { .. } => "restart-ice",
            Request::SetConsumerPreferredLayers { .. } => "set-consumer-preferred-layers",
            Request::LeaveRoom => "leave-room",
            Request::ProduceData { .. } => "produce-data",
            Request::ConsumeData { .. } => "consume-data",
            Request::CloseDataProducer { .. } => "close-data-producer",
        }
    }
}

pub fn is_valid_room_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn fields<T: DeserializeOwned>(method: &str, data: Value) -> Result<T, ApiError> {
    if !data.is_object() {
        return Err(ApiError::bad_request(format!(
            "{method}: \"data\" must be an object"
        )));
    }
    serde_json::from_value(data).map_err(|e| ApiError::bad_request(format!("{method}: {e}")))
}

fn check_id(method: &str, field: &str, id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(ApiError::bad_request(format!(
            "{method}: \"{field}\" must be 1..={MAX_ID_LEN} bytes"
        )));
    }
    Ok(())
}

/// Decodes and validates `data` for `method`.
pub fn parse_request(method: &str, data: Value) -> Result<Request, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Join {
        room_id: String,
        #[serde(default)]
        display_name: Option<String>,
    }
    #[derive(Deserialize)]
    struct CreateTransport {
        direction: Direction,
        #[serde(default)]
        sctp: Option<bool>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct ProduceData {
        transport_id: String,
        sctp_stream_parameters: SctpStreamParameters,
        #[serde(default)]
        label: String,
        #[serde(default)]
        protocol: String,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct ConsumeData {
        transport_id: String,
        data_producer_id: String,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct DataProducerRef {
        data_producer_id: String,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Connect {
        transport_id: String,
        dtls_parameters: DtlsParameters,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Produce {
        transport_id: String,
        kind: Kind,
        rtp_parameters: Value,
        #[serde(default)]
        app_data: Value,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Consume {
        transport_id: String,
        producer_id: String,
        rtp_capabilities: Value,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct ConsumerRef {
        consumer_id: String,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct ProducerRef {
        producer_id: String,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct TransportRef {
        transport_id: String,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Layers {
        consumer_id: String,
        spatial_layer: u8,
        #[serde(default)]
        temporal_layer: Option<u8>,
    }

    let m = method;
    Ok(match method {
        "join-room" => {
            let j: Join = fields(m, data)?;
            if !is_valid_room_id(&j.room_id) {
                return Err(ApiError::bad_request(
                    "join-room: \"roomId\" must be 1-64 characters of [A-Za-z0-9_-]",
                ));
            }
            let display_name = j.display_name.unwrap_or_default();
            if display_name.chars().count() > MAX_DISPLAY_NAME
                || display_name
                    .chars()
                    .any(super::access::is_forbidden_in_name)
            {
                return Err(ApiError::bad_request(format!(
                    "join-room: \"displayName\" must be at most {MAX_DISPLAY_NAME} printable characters, without control or bidirectional-override characters"
                )));
            }
            Request::JoinRoom {
                room_id: j.room_id,
                display_name,
            }
        }
        "create-transport" => {
            let c: CreateTransport = fields(m, data)?;
            Request::CreateTransport {
                direction: c.direction,
                sctp: c.sctp.unwrap_or(false),
            }
        }
        "connect-transport" => {
            let c: Connect = fields(m, data)?;
            check_id(m, "transportId", &c.transport_id)?;
            let fps = &c.dtls_parameters.fingerprints;
            if fps.is_empty() || fps.len() > 8 {
                return Err(ApiError::bad_request(
                    "connect-transport: \"dtlsParameters.fingerprints\" must list 1..=8 fingerprints",
                ));
            }
            if fps
                .iter()
                .any(|f| f.algorithm.len() > 16 || f.value.len() > 200)
            {
                return Err(ApiError::bad_request(
                    "connect-transport: a fingerprint is too long",
                ));
            }
            Request::ConnectTransport {
                transport_id: c.transport_id,
                dtls_parameters: c.dtls_parameters,
            }
        }
        "produce" => {
            let p: Produce = fields(m, data)?;
            check_id(m, "transportId", &p.transport_id)?;
            if !p.rtp_parameters.is_object() {
                return Err(ApiError::bad_request(
                    "produce: \"rtpParameters\" must be an object",
                ));
            }
            Request::Produce {
                transport_id: p.transport_id,
                kind: p.kind,
                rtp_parameters: p.rtp_parameters,
                app_data: p.app_data,
            }
        }
        "consume-media" => {
            let c: Consume = fields(m, data)?;
            check_id(m, "transportId", &c.transport_id)?;
            check_id(m, "producerId", &c.producer_id)?;
            if !c.rtp_capabilities.is_object() {
                return Err(ApiError::bad_request(
                    "consume-media: \"rtpCapabilities\" must be an object",
                ));
            }
            Request::ConsumeMedia {
                transport_id: c.transport_id,
                producer_id: c.producer_id,
                rtp_capabilities: c.rtp_capabilities,
            }
        }
        "resume-consumer" | "pause-consumer" => {
            let c: ConsumerRef = fields(m, data)?;
            check_id(m, "consumerId", &c.consumer_id)?;
            if m == "resume-consumer" {
                Request::ResumeConsumer {
                    consumer_id: c.consumer_id,
                }
            } else {
                Request::PauseConsumer {
                    consumer_id: c.consumer_id,
                }
            }
        }
        "pause-producer" | "resume-producer" | "close-producer" => {
            let p: ProducerRef = fields(m, data)?;
            check_id(m, "producerId", &p.producer_id)?;
            let producer_id = p.producer_id;
            match m {
                "pause-producer" => Request::PauseProducer { producer_id },
                "resume-producer" => Request::ResumeProducer { producer_id },
                _ => Request::CloseProducer { producer_id },
            }
        }
        "restart-ice" => {
            let t: TransportRef = fields(m, data)?;
            check_id(m, "transportId", &t.transport_id)?;
            Request::RestartIce {
                transport_id: t.transport_id,
            }
        }
        "set-consumer-preferred-layers" => {
            let l: Layers = fields(m, data)?;
            check_id(m, "consumerId", &l.consumer_id)?;
            Request::SetConsumerPreferredLayers {
                consumer_id: l.consumer_id,
                spatial_layer: l.spatial_layer,
                temporal_layer: l.temporal_layer,
            }
        }
        "leave-room" => Request::LeaveRoom,
        "produce-data" => {
            let p: ProduceData = fields(m, data)?;
            check_id(m, "transportId", &p.transport_id)?;
            let s = &p.sctp_stream_parameters;
            if s.stream_id >= crate::rtc::sctp::SCTP_MIS {
                return Err(ApiError::bad_request(format!(
                    "produce-data: \"sctpStreamParameters.streamId\" must be below {}",
                    crate::rtc::sctp::SCTP_MIS
                )));
            }
            if s.max_packet_life_time.is_some() && s.max_retransmits.is_some() {
                return Err(ApiError::bad_request(
                    "produce-data: give maxPacketLifeTime or maxRetransmits, not both",
                ));
            }
            for (field, value) in [("label", &p.label), ("protocol", &p.protocol)] {
                if value.len() > MAX_DATA_LABEL || value.chars().any(char::is_control) {
                    return Err(ApiError::bad_request(format!(
                        "produce-data: \"{field}\" must be at most {MAX_DATA_LABEL} bytes without control characters"
                    )));
                }
            }
            Request::ProduceData {
                transport_id: p.transport_id,
                sctp_stream_parameters: p.sctp_stream_parameters,
                label: p.label,
                protocol: p.protocol,
            }
        }
        "consume-data" => {
            let c: ConsumeData = fields(m, data)?;
            check_id(m, "transportId", &c.transport_id)?;
            check_id(m, "dataProducerId", &c.data_producer_id)?;
            Request::ConsumeData {
                transport_id: c.transport_id,
                data_producer_id: c.data_producer_id,
            }
        }
        "close-data-producer" => {
            let d: DataProducerRef = fields(m, data)?;
            check_id(m, "dataProducerId", &d.data_producer_id)?;
            Request::CloseDataProducer {
                data_producer_id: d.data_producer_id,
            }
        }
        "" => return Err(ApiError::bad_request("request has no \"method\" string")),
        other => {
            let shown: String = other.chars().take(64).collect();
            return Err(ApiError::bad_request(format!("unknown method \"{shown}\"")));
        }
    })
}

pub fn response_ok(id: u32, data: Value) -> String {
    json!({"response": true, "id": id, "ok": true, "data": data}).to_string()
}

pub fn response_err(id: u32, err: &ApiError) -> String {
    let mut error = json!({"code": err.code.as_str(), "message": err.message});
    if let Some(url) = &err.url {
        error["url"] = json!(url);
    }
    json!({"response": true, "id": id, "ok": false, "error": error}).to_string()
}

pub fn notification(method: &str, data: Value) -> String {
    json!({"notification": true, "method": method, "data": data}).to_string()
}

pub fn error_notification(message: &str) -> String {
    notification(
        "error",
        json!({"code": ErrorCode::BadRequest.as_str(), "message": message}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &str) -> Result<Request, ApiError> {
        match parse_frame(text) {
            Frame::Request { method, data, .. } => parse_request(&method, data),
            Frame::Invalid(m) => panic!("invalid frame: {m}"),
        }
    }

    #[test]
    fn a_frame_that_is_not_json_is_invalid() {
        assert!(matches!(parse_frame("{nope"), Frame::Invalid(_)));
    }

    #[test]
    fn a_request_without_a_numeric_id_is_invalid() {
        assert!(matches!(
            parse_frame(r#"{"request":true,"id":"7","method":"leave-room"}"#),
            Frame::Invalid(_)
        ));
        assert!(matches!(
            parse_frame(r#"{"request":true,"id":4294967296,"method":"leave-room"}"#),
            Frame::Invalid(_)
        ));
    }

    #[test]
    fn join_room_accepts_a_valid_room_id_and_display_name() {
        let r = request(r#"{"request":true,"id":1,"method":"join-room","data":{"roomId":"a-B_9","displayName":"Ann"}}"#).unwrap();
        assert!(
            matches!(r, Request::JoinRoom { room_id, display_name } if room_id == "a-B_9" && display_name == "Ann")
        );
    }

    #[test]
    fn join_room_with_an_invalid_room_id_fails_with_bad_request() {
        for id in ["", "a b", "../x", &"x".repeat(65)] {
            let text = json!({"request":true,"id":1,"method":"join-room","data":{"roomId": id}})
                .to_string();
            assert_eq!(
                request(&text).unwrap_err().code,
                ErrorCode::BadRequest,
                "{id}"
            );
        }
    }

    #[test]
    fn wrong_field_types_fail_with_bad_request_naming_the_field() {
        let e = request(r#"{"request":true,"id":1,"method":"join-room","data":{"roomId":5}}"#)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        let e = request(
            r#"{"request":true,"id":1,"method":"create-transport","data":{"direction":"up"}}"#,
        )
        .unwrap_err();
        assert!(e.message.contains("up"), "{}", e.message);
        let e =
            request(r#"{"request":true,"id":1,"method":"resume-consumer","data":[]}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
    }

    #[test]
    fn create_transport_takes_an_optional_sctp_flag() {
        let r = request(
            r#"{"request":true,"id":1,"method":"create-transport","data":{"direction":"send","sctp":true}}"#,
        );
        assert!(matches!(r, Ok(Request::CreateTransport { sctp: true, .. })));
        let r = request(
            r#"{"request":true,"id":1,"method":"create-transport","data":{"direction":"recv"}}"#,
        );
        assert!(matches!(
            r,
            Ok(Request::CreateTransport { sctp: false, .. })
        ));
        let e = request(r#"{"request":true,"id":1,"method":"create-transport","data":{"direction":"recv","sctp":"yes"}}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
    }

    #[test]
    fn produce_data_validates_its_stream_parameters_and_labels() {
        let ok = request(
            r#"{"request":true,"id":1,"method":"produce-data","data":{"transportId":"t","sctpStreamParameters":{"streamId":3,"ordered":true},"label":"chat","protocol":""}}"#,
        );
        assert!(matches!(ok, Ok(Request::ProduceData { .. })), "{ok:?}");
        for bad in [
            r#"{"transportId":"t","sctpStreamParameters":{"streamId":1024},"label":"chat"}"#,
            r#"{"transportId":"t","sctpStreamParameters":{"streamId":70000},"label":"chat"}"#,
            r#"{"transportId":"t","sctpStreamParameters":{"streamId":1,"maxRetransmits":1,"maxPacketLifeTime":5}}"#,
            r#"{"transportId":"t","label":"chat"}"#,
            r#"{"transportId":"t","sctpStreamParameters":{"streamId":1},"label":"a\u0007b"}"#,
        ] {
            let frame =
                format!(r#"{{"request":true,"id":1,"method":"produce-data","data":{bad}}}"#);
            assert_eq!(
                request(&frame).unwrap_err().code,
                ErrorCode::BadRequest,
                "{bad}"
            );
        }
        let long = "x".repeat(MAX_DATA_LABEL + 1);
        let frame = format!(
            r#"{{"request":true,"id":1,"method":"produce-data","data":{{"transportId":"t","sctpStreamParameters":{{"streamId":1}},"protocol":"{long}"}}}}"#
        );
        assert_eq!(request(&frame).unwrap_err().code, ErrorCode::BadRequest);
        let e = request(
            r#"{"request":true,"id":1,"method":"consume-data","data":{"transportId":"t"}}"#,
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        let e = request(r#"{"request":true,"id":1,"method":"close-data-producer","data":{"dataProducerId":""}}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
    }

    #[test]
    fn an_unknown_method_fails_with_bad_request() {
        let e = request(r#"{"request":true,"id":1,"method":"fly","data":{}}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert!(e.message.contains("fly"));
    }

    #[test]
    fn responses_and_notifications_have_the_envelope_of_the_protocol() {
        let ok: Value = serde_json::from_str(&response_ok(3, json!({}))).unwrap();
        assert_eq!(ok, json!({"response":true,"id":3,"ok":true,"data":{}}));
        let err: Value =
            serde_json::from_str(&response_err(4, &ApiError::not_found("producer"))).unwrap();
        assert_eq!(
            err,
            json!({"response":true,"id":4,"ok":false,"error":{"code":"not-found","message":"producer"}})
        );
        let n: Value =
            serde_json::from_str(&notification("peer-left", json!({"peerId":"p"}))).unwrap();
        assert_eq!(
            n,
            json!({"notification":true,"method":"peer-left","data":{"peerId":"p"}})
        );
    }
}
