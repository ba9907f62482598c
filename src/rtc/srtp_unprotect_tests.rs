//! Our SRTP unprotect, cross-checked against `webrtc-srtp` (the oracle) and our protect.

use super::*;
use crate::rtc::srtp_inplace::tests::allocations;
use crate::rtc::srtp_inplace::{RtpProtector, MAX_RTP_TAG_LEN};
use webrtc_srtp::context::Context;
use webrtc_srtp::protection_profile::ProtectionProfile;

fn master(profile: SrtpProfile) -> (Vec<u8>, Vec<u8>) {
    let key = (0..profile.key_len()).map(|i| (i * 7 + 3) as u8).collect();
    let salt = (0..profile.salt_len())
        .map(|i| (i * 31 + 9) as u8)
        .collect();
    (key, salt)
}

fn ours(profile: SrtpProfile) -> RtpUnprotector {
    let (key, salt) = master(profile);
    RtpUnprotector::new(profile, &key, &salt).unwrap()
}

/// The browser's side: `webrtc-srtp` encrypting with the same keys.
fn oracle_sender(profile: SrtpProfile) -> Context {
    let (key, salt) = master(profile);
    Context::new(&key, &salt, ProtectionProfile::from(profile), None, None).unwrap()
}

fn our_sender(profile: SrtpProfile) -> RtpProtector {
    let (key, salt) = master(profile);
    RtpProtector::new(profile, &key, &salt).unwrap()
}

/// Varied headers: plain, with CSRCs, with a one-byte extension block, with padding.
fn rtp_packet(ssrc: u32, seq: u16) -> Vec<u8> {
    let kind = seq % 4;
    let mut p = vec![0x80, 96];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 3000).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    match kind {
        1 => {
            p[0] |= 2;
            p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2]);
        }
        2 => {
            p[0] |= 0x10;
            p.extend_from_slice(&[0xBE, 0xDE, 0, 2, 0x10, b'1', 0x22, 1, 2, 3, 0, 0]);
        }
        _ => {}
    }
    p.extend((0..(40 + seq % 91)).map(|i| (i ^ seq) as u8));
    if kind == 3 {
        p[0] |= 0x20;
        p.extend_from_slice(&[0, 0, 0, 4]);
    }
    p
}

fn unprotect(rx: &mut RtpUnprotector, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
    let mut buf = packet.to_vec();
    let len = rx.unprotect_in_place(&mut buf)?;
    buf.truncate(len);
    Ok(buf)
}

/// Two SSRCs, each crossing 2^16 (ROC 0 → 1) at a different time, with some reordering.
fn across_a_wrap() -> Vec<(u32, u16)> {
    let mut out = Vec::new();
    for i in 0..80u16 {
        out.push((0x1111_1111, 0xFFD0u16.wrapping_add(i)));
        out.push((0x2222_2222, 0xFFF0u16.wrapping_add(i ^ 1)));
    }
    out
}

#[test]
fn packets_encrypted_by_webrtc_srtp_unprotect_to_the_same_bytes_across_a_wrap() {
    for profile in SrtpProfile::PREFERENCE {
        let mut sender = oracle_sender(profile);
        let mut rx = ours(profile);
        for (ssrc, seq) in across_a_wrap() {
            let plain = rtp_packet(ssrc, seq);
            let protected = sender.encrypt_rtp(&plain).unwrap();
            let got = unprotect(&mut rx, &protected)
                .unwrap_or_else(|e| panic!("{profile:?} ssrc {ssrc:x} seq {seq}: {e}"));
            assert_eq!(got, plain, "{profile:?} seq {seq}");
        }
        assert_eq!(rx.rollover_counter(0x1111_1111), Some(1), "{profile:?}");
        assert_eq!(rx.rollover_counter(0x2222_2222), Some(1), "{profile:?}");
        assert_eq!(rx.ssrcs(), 2);
    }
}

#[test]
fn packets_protected_by_our_protect_unprotect_to_the_same_bytes_across_a_wrap() {
    for profile in SrtpProfile::PREFERENCE {
        let mut sender = our_sender(profile);
        let mut rx = ours(profile);
        for (ssrc, seq) in across_a_wrap() {
            let plain = rtp_packet(ssrc, seq);
            let mut protected = plain.clone();
            sender.protect_in_place(&mut protected).unwrap();
            assert_eq!(protected.len(), plain.len() + rx.tag_len());
            assert_eq!(
                unprotect(&mut rx, &protected).unwrap(),
                plain,
                "{profile:?}"
            );
        }
    }
}

#[test]
fn a_long_stream_keeps_its_rollover_counter_over_several_wraps() {
    let profile = SrtpProfile::Aes128CmHmacSha1_32;
    let mut sender = our_sender(profile);
    let mut rx = ours(profile);
    for i in 0..(3 * 65536 + 100u32) {
        let mut p = rtp_packet(5, i as u16);
        sender.protect_in_place(&mut p).unwrap();
        // Skip most packets to keep the test fast: gaps below 2^15 keep the estimate right.
        if i % 997 == 0 || i > 3 * 65536 {
            unprotect(&mut rx, &p).unwrap_or_else(|e| panic!("packet {i}: {e}"));
        }
    }
    assert_eq!(rx.rollover_counter(5), Some(3));
}

#[test]
fn replays_and_packets_older_than_the_window_are_refused() {
    for profile in SrtpProfile::PREFERENCE {
        let mut sender = oracle_sender(profile);
        let mut rx = ours(profile);
        let packets: Vec<_> = (100..800u16)
            .map(|s| sender.encrypt_rtp(&rtp_packet(9, s)).unwrap())
            .collect();
        unprotect(&mut rx, &packets[1]).unwrap();
        unprotect(&mut rx, &packets[0]).unwrap(); // late, not replayed
        assert_eq!(unprotect(&mut rx, &packets[1]), Err(SrtpError::Replayed));
        assert_eq!(unprotect(&mut rx, &packets[0]), Err(SrtpError::Replayed));
        unprotect(&mut rx, &packets[699]).unwrap();
        // 698 behind the newest: outside the 512-packet window although never seen.
        assert_eq!(unprotect(&mut rx, &packets[2]), Err(SrtpError::Replayed));
        unprotect(&mut rx, &packets[699 - 500]).unwrap();
    }
}

#[test]
fn tampered_or_truncated_packets_are_refused_and_change_no_state() {
    for profile in SrtpProfile::PREFERENCE {
        let mut sender = oracle_sender(profile);
        let mut rx = ours(profile);
        let first = sender.encrypt_rtp(&rtp_packet(7, 0xFFF0)).unwrap();
        unprotect(&mut rx, &first).unwrap();
        // Forged packets that would move the stream across a wrap if they were believed.
        let next_plain = rtp_packet(7, 0x0003);
        let next = sender.encrypt_rtp(&next_plain).unwrap();
        let mut forgeries = Vec::new();
        for at in [0usize, 1, 2, 3, 8, 11, 12, next.len() / 2, next.len() - 1] {
            let mut f = next.to_vec();
            f[at] ^= 0x04;
            forgeries.push(f);
        }
        for len in 0..next.len() {
            forgeries.push(next[..len].to_vec());
        }
        // A new SSRC with a junk tag must not create state.
        let mut other = sender.encrypt_rtp(&rtp_packet(0xABCD, 1)).unwrap().to_vec();
        *other.last_mut().unwrap() ^= 1;
        forgeries.push(other);
        for f in &forgeries {
            assert!(unprotect(&mut rx, f).is_err(), "{profile:?} {f:?}");
            assert_eq!(rx.ssrcs(), 1, "{profile:?}");
            assert_eq!(rx.rollover_counter(7), Some(0), "{profile:?}");
        }
        assert_eq!(
            unprotect(&mut rx, &next).unwrap(),
            next_plain,
            "{profile:?}"
        );
        assert_eq!(rx.rollover_counter(7), Some(1));
    }
}

#[test]
fn authenticated_ssrcs_beyond_the_budget_are_dropped_and_counted() {
    let profile = SrtpProfile::AeadAes128Gcm;
    let mut sender = our_sender(profile);
    let mut rx = ours(profile);
    for ssrc in 0..(MAX_RECEIVE_SSRCS as u32 + 10) {
        let mut p = rtp_packet(1000 + ssrc, 1);
        sender.protect_in_place(&mut p).unwrap();
        let r = unprotect(&mut rx, &p);
        if (ssrc as usize) < MAX_RECEIVE_SSRCS {
            r.unwrap();
        } else {
            assert_eq!(r, Err(SrtpError::TooManySsrcs));
        }
    }
    assert_eq!(rx.ssrcs(), MAX_RECEIVE_SSRCS);
    assert_eq!(rx.refused_ssrcs(), 10);
    // Known SSRCs keep flowing.
    let mut p = rtp_packet(1000, 2);
    sender.protect_in_place(&mut p).unwrap();
    unprotect(&mut rx, &p).unwrap();
}

#[test]
fn junk_with_random_ssrcs_creates_no_state() {
    for profile in SrtpProfile::PREFERENCE {
        let mut rx = ours(profile);
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut buf = Vec::with_capacity(300);
        for _ in 0..5_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf.clear();
            buf.extend_from_slice(&[0x80, 96]);
            buf.extend_from_slice(&x.to_be_bytes()[..2]);
            buf.extend_from_slice(&[0, 0, 0, 0]);
            buf.extend_from_slice(&(x as u32).to_be_bytes());
            buf.extend((0..(x % 200) as u8).map(|i| i ^ (x >> 32) as u8));
            assert!(rx.unprotect_in_place(&mut buf).is_err());
        }
        assert_eq!(rx.ssrcs(), 0);
    }
}

#[test]
fn unprotecting_in_place_allocates_nothing_once_the_ssrc_is_known() {
    for profile in SrtpProfile::PREFERENCE {
        let mut sender = our_sender(profile);
        let mut rx = ours(profile);
        let inputs: Vec<Vec<u8>> = (0..200u16)
            .map(|s| {
                let mut p = rtp_packet(0x77, s.wrapping_add(0xFFA0));
                sender.protect_in_place(&mut p).unwrap();
                p
            })
            .collect();
        let mut buf = Vec::with_capacity(2048 + MAX_RTP_TAG_LEN);
        buf.extend_from_slice(&inputs[0]);
        rx.unprotect_in_place(&mut buf).unwrap();
        let mut counted = 0;
        for (i, input) in inputs.iter().enumerate().skip(1) {
            buf.clear();
            buf.extend_from_slice(input);
            let before = allocations();
            rx.unprotect_in_place(&mut buf).unwrap();
            // Failing packets must not allocate either (the junk path).
            buf.clear();
            buf.extend_from_slice(&inputs[(i + 1) % inputs.len()]);
            *buf.last_mut().unwrap() ^= 1;
            assert!(rx.unprotect_in_place(&mut buf).is_err());
            counted += allocations() - before;
        }
        assert_eq!(counted, 0, "{profile:?}");
    }
}
