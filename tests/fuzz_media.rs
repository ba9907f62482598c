//! Fuzz targets for the media-socket parsers: STUN (ICE-lite), RTP with header extensions
//! (parse, extension walk, per-consumer rewrite, key-frame detection), RTCP, and RFC 4571
//! framing. Structure-aware: every target mutates valid packets, so most inputs get past the
//! first checks. Bounded (see tests/fuzz_support). Crashing inputs found so far are the
//! regression cases at the end.

mod fuzz_support;

use fuzz_support::{unhex, Fuzz};
use rand::Rng;
use sfu::rtc::framing::{encode_frame, FrameDecoder, FramingError};
use sfu::rtc::keyframe::{is_keyframe, VideoCodec};
use sfu::rtc::rtcp::{self, RtcpEvent};
use sfu::rtc::rtp::{extensions, parse_rtp, rewrite_into, ExtIdMap, Rewrite};
use sfu::rtc::{classify, ice};
use std::net::SocketAddr;
use stun::agent::TransactionId;
use stun::attributes::{ATTR_ICE_CONTROLLING, ATTR_PRIORITY, ATTR_USERNAME, ATTR_USE_CANDIDATE};
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::{Message, Setter, BINDING_REQUEST};
use stun::textattrs::TextAttribute;

const PWD: &str = "server-password-0123456789";

fn binding_request(username: &str, nominate: bool, integrity: bool, fingerprint: bool) -> Vec<u8> {
    let mut m = Message::new();
    m.set_type(BINDING_REQUEST);
    m.transaction_id = TransactionId::new();
    m.write_header();
    TextAttribute::new(ATTR_USERNAME, username.to_owned())
        .add_to(&mut m)
        .unwrap();
    m.add(ATTR_PRIORITY, &1_845_501_695u32.to_be_bytes());
    m.add(ATTR_ICE_CONTROLLING, &7u64.to_be_bytes());
    if nominate {
        m.add(ATTR_USE_CANDIDATE, &[]);
    }
    if integrity {
        MessageIntegrity::new_short_term_integrity(PWD.to_owned())
            .add_to(&mut m)
            .unwrap();
    }
    if fingerprint {
        FINGERPRINT.add_to(&mut m).unwrap();
    }
    m.raw.clone()
}

#[test]
fn fuzz_stun_binding_requests_never_panic_and_never_answer_a_forgery() {
    let seeds = vec![
        binding_request("srv:cli", true, true, true),
        binding_request("srv:cli", false, true, true),
        binding_request("srv:cli", false, true, false),
        binding_request("s:c", false, false, false),
        binding_request("ünïcode:x", true, true, true),
    ];
    let from: SocketAddr = "127.0.0.1:5000".parse().unwrap();
    let mut out = Vec::with_capacity(256);
    let mut answered_mutants = 0u64;
    let ran = Fuzz::new("stun").run(&seeds, |input| {
        let _ = classify(input);
        let _ = ice::parse_binding_request(input);
        out.clear();
        if ice::answer_binding_request(input, PWD, from, &mut out).is_ok() {
            // Only a request carrying a valid MESSAGE-INTEGRITY under our password is
            // answered: the answer must itself be STUN.
            assert!(stun::message::is_message(&out), "answer is not STUN");
            if !seeds.iter().any(|s| s == input) {
                answered_mutants += 1;
            }
        }
        let mut m = Message::new();
        let _ = m.unmarshal_binary(input);
    });
    assert!(ran > 1000, "only {ran} inputs ran");
    // Mutations that keep integrity intact exist (e.g. truncating after FINGERPRINT is cut),
    // but they must stay rare: most edits break the HMAC.
    assert!(answered_mutants < ran / 4, "{answered_mutants} of {ran}");
}

/// RTP packets as browsers send them: one-byte and two-byte extensions, CSRCs, padding.
fn rtp_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    // One-byte form: mid "0" (id 4), abs-send-time (id 2), twcc (id 3); VP8 key frame.
    let mut p = vec![
        0x90, 0xe0, 0x12, 0x34, 0, 0, 0x10, 0, 0xde, 0xad, 0xbe, 0xef,
    ];
    p.extend_from_slice(&[
        0xbe, 0xde, 0, 3, 0x40, b'0', 0x22, 1, 2, 3, 0x31, 0, 9, 0, 0, 0,
    ]);
    p.extend_from_slice(&[0x90, 0x80, 0x80, 0x01, 0x50, 0x2a, 0x00, 0x9d, 0x01, 0x2a]);
    p.extend_from_slice(&[0xa5; 40]);
    seeds.push(p);
    // Two-byte form with an empty element and a long one; H.264 IDR.
    let mut p = vec![0x90, 0x66, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2];
    p.extend_from_slice(&[0x10, 0x00, 0, 6, 1, 0, 2, 17]);
    p.extend_from_slice(&[0x77; 17]);
    p.extend_from_slice(&[0, 0, 0]);
    p.extend_from_slice(&[0x65, 0x88, 0x84, 0x00]);
    seeds.push(p);
    // Two CSRCs, padding of 4, VP9 payload.
    let mut p = vec![
        0xa2, 0x62, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5, 0, 0, 0, 6,
    ];
    p.extend_from_slice(&[0x8a, 0x00, 0x01, 0x02, 0, 0, 0, 4]);
    seeds.push(p);
    // AV1 aggregation header, no extension.
    let mut p = vec![0x80, 0x23, 0, 3, 0, 0, 0, 5, 0, 0, 0, 6];
    p.extend_from_slice(&[0x18, 0x0a, 0x0b, 0x00]);
    seeds.push(p);
    seeds
}

#[test]
fn fuzz_rtp_parse_rewrite_and_keyframe_detection_stay_inside_the_packet() {
    let seeds = rtp_seeds();
    let mut map = ExtIdMap::new();
    for id in 1..=14 {
        map.set(id, id);
    }
    map.set(4, 0);
    map.set(1, 200); // forces the two-byte form on rewrite
    let plain = ExtIdMap::new();
    let mut out = Vec::with_capacity(2048);
    let mut parsed = 0u64;
    let ran = Fuzz::new("rtp").run(&seeds, |input| {
        let Some(h) = parse_rtp(input) else {
            return;
        };
        parsed += 1;
        // Everything the header reports lies inside the packet.
        assert!(h.ext_start + h.ext_len <= input.len(), "{h:?}");
        assert!(h.ext_start >= 12 + 4 * usize::from(h.csrc_count), "{h:?}");
        assert!(h.payload_start <= h.payload_end, "{h:?}");
        assert!(h.payload_end <= input.len(), "{h:?}");
        assert!(h.payload_start >= h.ext_start + h.ext_len, "{h:?}");
        let ext_block = input.as_ptr_range();
        for (_, value) in extensions(input, &h) {
            let r = value.as_ptr_range();
            assert!(r.start >= ext_block.start && r.end <= ext_block.end);
        }
        let payload = h.payload(input);
        for codec in [
            VideoCodec::Vp8,
            VideoCodec::Vp9,
            VideoCodec::H264,
            VideoCodec::Av1,
            VideoCodec::Other,
        ] {
            let _ = is_keyframe(codec, payload);
        }
        for (ext_map, mid, twcc) in [
            (&map, Some((4u8, &b"17"[..])), Some((5u8, 0xFFFFu16))),
            (&plain, None, None),
        ] {
            let rw = Rewrite {
                ssrc: 0x0102_0304,
                payload_type: 101,
                sequence: 9,
                timestamp: 10,
                ext_map,
                mid,
                twcc,
            };
            rewrite_into(input, &h, &rw, &mut out);
            // The consumer's copy is RTP again, with the same payload.
            let again = parse_rtp(&out).expect("a rewritten packet parses");
            assert_eq!(again.ssrc, 0x0102_0304);
            assert_eq!(again.payload(&out), payload);
        }
    });
    assert!(
        ran > 1000 && parsed > ran / 10,
        "ran {ran}, parsed {parsed}"
    );
}

fn rtcp_seeds() -> Vec<Vec<u8>> {
    let mut compound = Vec::new();
    rtcp::build_sender_report(1, rtcp::ntp_now(), 90_000, 10, 1000, &mut compound);
    rtcp::build_remb(1, 1_500_000, &[2, 3], &mut compound);
    let mut feedback = Vec::new();
    rtcp::build_receiver_report(1, &[], &mut feedback);
    rtcp::build_pli(1, 2, &mut feedback);
    rtcp::build_fir(1, 2, 7, &mut feedback);
    rtcp::build_nack(1, 2, &[5, 6, 7, 30, 200], &mut feedback);
    // A transport-cc feedback header (PT 205, FMT 15) with a short body.
    let twcc = vec![
        0x8f, 205, 0, 5, 0, 0, 0, 1, 0, 0, 0, 2, 0, 1, 0, 2, 0, 0, 0, 1, 0x20, 2, 1, 1,
    ];
    // SDES + BYE.
    let other = vec![
        0x81, 202, 0, 2, 0, 0, 0, 1, 1, 1, b'x', 0, 0x81, 203, 0, 1, 0, 0, 0, 1,
    ];
    vec![compound, feedback, twcc, other]
}

#[test]
fn fuzz_rtcp_compound_parsing_never_panics() {
    let seeds = rtcp_seeds();
    let mut events = Vec::new();
    let mut understood = 0u64;
    let ran = Fuzz::new("rtcp").run(&seeds, |input| {
        events.clear();
        let _ = classify(input);
        if rtcp::parse_compound(input, &mut events).is_ok() {
            understood += 1;
        }
        for e in &events {
            // NACK loss lists are bounded by the packet that carried them.
            if let RtcpEvent::Nack { lost, .. } = e {
                assert!(lost.len() <= 16 * input.len() / 4, "{} lost", lost.len());
            }
        }
    });
    assert!(
        ran > 1000 && understood > 0,
        "ran {ran}, understood {understood}"
    );
}

#[test]
fn fuzz_rfc4571_framing_buffers_at_most_one_frame_and_never_invents_bytes() {
    const MAX: usize = 1500;
    let mut fuzz = Fuzz::new("framing");
    let started = std::time::Instant::now();
    let mut streams = 0;
    while streams < 3000 && started.elapsed() < std::time::Duration::from_secs(5) {
        streams += 1;
        let rng = &mut fuzz.rng;
        // A valid stream of frames, then maybe damaged, fed in random chunks.
        let mut frames: Vec<Vec<u8>> = Vec::new();
        let mut stream = Vec::new();
        for _ in 0..rng.gen_range(0..8) {
            let len = match rng.gen_range(0..4) {
                0 => 0,
                1 => rng.gen_range(1..20),
                2 => rng.gen_range(20..MAX),
                _ => MAX,
            };
            let frame: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            encode_frame(&frame, &mut stream).unwrap();
            frames.push(frame);
        }
        let damaged = rng.gen_bool(0.3) && !stream.is_empty();
        if damaged {
            let corpus = [stream.clone()];
            fuzz_support::mutate(rng, &mut stream, &corpus);
        }
        let mut decoder = FrameDecoder::new(MAX);
        let mut got: Vec<Vec<u8>> = Vec::new();
        let mut rest = &stream[..];
        let mut result = Ok(());
        while !rest.is_empty() && result.is_ok() {
            let n = rng.gen_range(1..=rest.len().min(3000));
            let (chunk, tail) = rest.split_at(n);
            result = decoder.feed(chunk, |f| {
                assert!(!f.is_empty() && f.len() <= MAX, "frame of {}", f.len());
                got.push(f.to_vec());
            });
            assert!(
                decoder.buffered() <= MAX + 2,
                "{} buffered",
                decoder.buffered()
            );
            rest = tail;
        }
        if let Err(FramingError::TooLarge { len, max }) = result {
            assert!(len > max && damaged);
        }
        if !damaged {
            let expected: Vec<Vec<u8>> = frames.into_iter().filter(|f| !f.is_empty()).collect();
            assert_eq!(got, expected);
            assert_eq!(decoder.buffered(), 0);
        }
    }
    assert!(streams >= 1000, "only {streams} streams");
}

/// Found by the attack (#10 item 1): a 36-byte RTP packet whose extension block fits,
/// but whose last one-byte element (0x1f at offset 32: id 1, 16 bytes) claims more bytes than
/// the packet holds (3).
const SHORT_ELEMENT_PACKET: &str = concat!(
    "906000010000000100000001",
    "bede0005",
    "00000000000000000000000000000000",
    "1f000000"
);

#[test]
fn regression_a_36_byte_packet_with_an_overlong_extension_element_parses_safely() {
    let input = unhex(SHORT_ELEMENT_PACKET);
    assert_eq!(input.len(), 36);
    if let Some(h) = parse_rtp(&input) {
        assert!(h.ext_start + h.ext_len <= input.len());
        assert_eq!(
            extensions(&input, &h).count(),
            0,
            "the overlong element is not reported"
        );
    }
}

/// The same packet through SRTP decryption: webrtc-srtp parsed the RTP header (rtp crate,
/// `Header::unmarshal`) before it checked the auth tag, and that parser panicked on it; ours
/// authenticates first.
#[test]
fn regression_a_36_byte_packet_with_an_overlong_extension_element_survives_srtp_decrypt() {
    use sfu::rtc::srtp::{split_keying_material, SrtpProfile, SrtpSession};
    let input = unhex(SHORT_ELEMENT_PACKET);
    let profile = SrtpProfile::Aes128CmHmacSha1_80;
    let material = vec![7u8; 2 * (profile.key_len() + profile.salt_len())];
    let keys = split_keying_material(profile, &material, false).unwrap();
    let mut session = SrtpSession::new(&keys).unwrap();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        session.decrypt_rtp(&input).is_err()
    }));
    assert_eq!(
        outcome.ok(),
        Some(true),
        "no panic, and the forgery is rejected"
    );
}
