//! Fixtures in `fixtures/` were produced by mediasoup 3.12.16's own `ortc.js` for the
//! reference server's codec config (see `fixtures/README.md`).

use serde_json::{json, Value};

use super::*;

const ROUTER_CAPS: &str = include_str!("fixtures/router_capabilities.json");
const CHROMIUM_RECV_CAPS: &str = include_str!("fixtures/chromium_recv_capabilities.json");
const PRODUCE_VP8: &str = include_str!("fixtures/produce_vp8.json");
const PRODUCE_VP8_SIMULCAST: &str = include_str!("fixtures/produce_vp8_simulcast.json");
const PRODUCE_H264: &str = include_str!("fixtures/produce_h264.json");
const PRODUCE_OPUS: &str = include_str!("fixtures/produce_opus.json");
const CONSUMER_EXPECTED: &str = include_str!("fixtures/consumer_expected.json");

fn caps() -> RtpCapabilities {
    router_capabilities(&default_media_codecs()).unwrap()
}

fn remote() -> RtpCapabilities {
    serde_json::from_str(CHROMIUM_RECV_CAPS).unwrap()
}

fn params(json: &str) -> RtpParameters {
    serde_json::from_str(json).unwrap()
}

fn value(json: &str) -> Value {
    serde_json::from_str(json).unwrap()
}

fn bad_request(result: Result<ProducerMapping, OrtcError>) -> String {
    match result {
        Err(OrtcError::BadRequest(msg)) => msg,
        other => panic!("expected BadRequest, got {other:?}"),
    }
}

#[test]
fn router_capabilities_equal_the_reference_answer() {
    let ours = serde_json::to_value(caps()).unwrap();
    assert_eq!(ours, value(ROUTER_CAPS));
}

#[test]
fn a_valid_vp8_produce_maps_codecs_encodings_and_extensions() {
    let mapping = validate_produce(MediaKind::Video, &params(PRODUCE_VP8), &caps()).unwrap();
    assert_eq!(mapping.codecs.len(), 1);
    let vp8 = &mapping.codecs[0];
    assert_eq!((vp8.payload_type, vp8.rtx_payload_type), (96, Some(97)));
    assert_eq!(vp8.router_codec.mime_type, "video/VP8");
    assert_eq!(vp8.router_codec.preferred_payload_type, Some(101));
    assert_eq!(
        vp8.router_rtx_codec
            .as_ref()
            .unwrap()
            .preferred_payload_type,
        Some(102)
    );
    assert_eq!(
        mapping.encodings,
        vec![ProducerEncoding {
            ssrc: Some(2876393227),
            rid: None,
            rtx_ssrc: Some(1739419263),
            codec_payload_type: None,
            scalability_mode: None,
            max_bitrate: None,
        }]
    );
    assert_eq!(mapping.mid_ext_id(), Some(4));
    assert_eq!(mapping.rid_ext_id(), None);
    assert_eq!(mapping.ext_id(uri::TRANSPORT_WIDE_CC), Some(3));
    assert_eq!(mapping.cname.as_deref(), Some("yRPQ2GmhUHnt1Z3d"));
}

#[test]
fn a_simulcast_produce_maps_rids() {
    let mapping =
        validate_produce(MediaKind::Video, &params(PRODUCE_VP8_SIMULCAST), &caps()).unwrap();
    let rids: Vec<_> = mapping
        .encodings
        .iter()
        .map(|e| e.rid.as_deref().unwrap())
        .collect();
    assert_eq!(rids, ["r0", "r1", "r2"]);
    assert_eq!(mapping.rid_ext_id(), Some(10));
    assert_eq!(mapping.repaired_rid_ext_id(), Some(11));
}

#[test]
fn produce_with_an_unknown_codec_fails_with_bad_request_naming_it() {
    let mut p = params(PRODUCE_VP8);
    p.codecs[0].mime_type = "video/FOO".into();
    let msg = bad_request(validate_produce(MediaKind::Video, &p, &caps()));
    assert!(msg.contains("video/FOO"), "{msg}");
}

#[test]
fn produce_with_a_codec_of_the_wrong_kind_fails() {
    let msg = bad_request(validate_produce(
        MediaKind::Audio,
        &params(PRODUCE_VP8),
        &caps(),
    ));
    assert!(msg.contains("video/VP8"), "{msg}");
}

#[test]
fn produce_without_encodings_fails() {
    let mut p = params(PRODUCE_VP8);
    p.encodings.clear();
    assert!(bad_request(validate_produce(MediaKind::Video, &p, &caps())).contains("encodings"));
    let mut p = params(PRODUCE_VP8);
    p.encodings[0].ssrc = None;
    assert!(bad_request(validate_produce(MediaKind::Video, &p, &caps())).contains("encodings[0]"));
}

#[test]
fn produce_with_only_rtx_or_a_dangling_apt_fails() {
    let mut p = params(PRODUCE_VP8);
    p.codecs.remove(0);
    assert!(bad_request(validate_produce(MediaKind::Video, &p, &caps())).contains("media codec"));
    let mut p = params(PRODUCE_VP8);
    p.codecs[1].parameters.insert("apt".into(), json!(55));
    assert!(bad_request(validate_produce(MediaKind::Video, &p, &caps())).contains("RTX"));
}

#[test]
fn produce_with_duplicated_header_extension_ids_fails() {
    let mut p = params(PRODUCE_VP8);
    p.header_extensions[1].id = 4;
    assert!(bad_request(validate_produce(MediaKind::Video, &p, &caps()))
        .contains("headerExtensions.id"));
    p.header_extensions[1].id = 0;
    assert!(bad_request(validate_produce(MediaKind::Video, &p, &caps()))
        .contains("headerExtensions.id"));
}

#[test]
fn produce_over_the_size_caps_fails_with_limit() {
    let mut p = params(PRODUCE_VP8_SIMULCAST);
    for rid in ["r3", "r4"] {
        let mut enc = p.encodings[0].clone();
        enc.rid = Some(rid.into());
        p.encodings.push(enc);
    }
    assert!(matches!(
        validate_produce(MediaKind::Video, &p, &caps()),
        Err(OrtcError::Limit(_))
    ));
    let mut p = params(PRODUCE_VP8);
    p.rtcp.cname = Some("x".repeat(MAX_STRING_LEN + 1));
    assert!(matches!(
        validate_produce(MediaKind::Video, &p, &caps()),
        Err(OrtcError::Limit(_))
    ));
}

#[test]
fn parameters_tolerate_unknown_fields_and_reject_bad_shapes() {
    let mut v = value(PRODUCE_VP8);
    v["codecs"][0]["somethingNew"] = json!({"a": 1});
    v["encodings"][0]["networkPriority"] = json!("high");
    assert!(serde_json::from_value::<RtpParameters>(v).is_ok());

    let mut v = value(PRODUCE_VP8);
    v["codecs"][0]
        .as_object_mut()
        .unwrap()
        .remove("payloadType");
    assert!(serde_json::from_value::<RtpParameters>(v).is_err());

    let mut v = value(PRODUCE_VP8);
    v["codecs"][0]["parameters"]["x"] = json!(true);
    assert!(serde_json::from_value::<RtpParameters>(v).is_err());

    let mut v = value(PRODUCE_VP8);
    v["headerExtensions"][0]["id"] = json!(256);
    assert!(serde_json::from_value::<RtpParameters>(v).is_err());
}

#[test]
fn consumer_params_for_a_chromium_remote_equal_the_reference_answers() {
    let expected = value(CONSUMER_EXPECTED);
    let cases = [
        ("produce_vp8", MediaKind::Video, PRODUCE_VP8),
        (
            "produce_vp8_simulcast",
            MediaKind::Video,
            PRODUCE_VP8_SIMULCAST,
        ),
        ("produce_h264", MediaKind::Video, PRODUCE_H264),
        ("produce_opus", MediaKind::Audio, PRODUCE_OPUS),
    ];
    for (name, kind, json) in cases {
        let want = &expected[name]["consumer"];
        let ssrc = want["encodings"][0]["ssrc"].as_u64().unwrap() as u32;
        let mapping = validate_produce(kind, &params(json), &caps()).unwrap();
        assert_eq!(
            can_consume(&mapping, &remote()),
            expected[name]["canConsume"] == json!(true)
        );
        let ours = consumer_params(
            &mapping,
            kind,
            &caps(),
            &remote(),
            "0".into(),
            ssrc,
            ssrc + 1,
            "yRPQ2GmhUHnt1Z3d".into(),
        )
        .unwrap();
        assert_eq!(serde_json::to_value(&ours).unwrap(), *want, "{name}");
    }
}

#[test]
fn consumer_extension_and_payload_type_pairs_map_producer_ids_to_consumer_ids() {
    let mapping = validate_produce(MediaKind::Video, &params(PRODUCE_VP8), &caps()).unwrap();
    let consumer = consumer_params(
        &mapping,
        MediaKind::Video,
        &caps(),
        &remote(),
        "3".into(),
        1000,
        1001,
        "c".into(),
    )
    .unwrap();
    let mut pairs = ext_id_pairs(&mapping, &consumer);
    pairs.sort_unstable();
    assert_eq!(pairs, [(2, 4), (3, 5), (4, 1), (13, 11), (14, 12)]);
    assert_eq!(
        payload_type_pairs(&mapping, &consumer),
        [(96, 101), (97, 102)]
    );
    assert_eq!(find_ext_id(&consumer.header_extensions, uri::MID), Some(1));
    assert_eq!(consumer.mid.as_deref(), Some("3"));
}

#[test]
fn consumer_without_remote_rtx_has_no_rtx_codec_or_ssrc() {
    let mapping = validate_produce(MediaKind::Video, &params(PRODUCE_VP8), &caps()).unwrap();
    let mut remote = remote();
    remote.codecs.retain(|c| c.mime_type != "video/rtx");
    let consumer = consumer_params(
        &mapping,
        MediaKind::Video,
        &caps(),
        &remote,
        "0".into(),
        7,
        8,
        "c".into(),
    )
    .unwrap();
    assert_eq!(consumer.codecs.len(), 1);
    assert_eq!(consumer.encodings[0].rtx, None);
}

#[test]
fn can_consume_is_false_when_the_remote_lacks_the_codec() {
    let mapping = validate_produce(MediaKind::Video, &params(PRODUCE_VP8), &caps()).unwrap();
    let mut remote = remote();
    remote.codecs.retain(|c| c.mime_type != "video/VP8");
    assert!(!can_consume(&mapping, &remote));
    let result = consumer_params(
        &mapping,
        MediaKind::Video,
        &caps(),
        &remote,
        "0".into(),
        1,
        2,
        "c".into(),
    );
    assert!(matches!(result, Err(OrtcError::Unsupported(_))));
}

#[test]
fn h264_with_another_profile_is_rejected_and_not_consumable() {
    let mut p = params(PRODUCE_H264);
    p.codecs[0]
        .parameters
        .insert("profile-level-id".into(), json!("640032"));
    let msg = bad_request(validate_produce(MediaKind::Video, &p, &caps()));
    assert!(msg.contains("video/H264"), "{msg}");

    let mut p = params(PRODUCE_H264);
    p.codecs[0]
        .parameters
        .insert("packetization-mode".into(), json!(0));
    bad_request(validate_produce(MediaKind::Video, &p, &caps()));

    let mapping = validate_produce(MediaKind::Video, &params(PRODUCE_H264), &caps()).unwrap();
    let mut remote = remote();
    for codec in remote
        .codecs
        .iter_mut()
        .filter(|c| c.mime_type == "video/H264")
    {
        codec
            .parameters
            .insert("profile-level-id".into(), json!("4d001f"));
    }
    assert!(!can_consume(&mapping, &remote));
}

#[test]
fn remote_capabilities_with_a_bad_mime_type_are_rejected() {
    let mut remote = remote();
    assert!(validate_capabilities(&remote).is_ok());
    remote.codecs[0].mime_type = "opus".into();
    assert!(matches!(
        validate_capabilities(&remote),
        Err(OrtcError::BadRequest(_))
    ));
}
