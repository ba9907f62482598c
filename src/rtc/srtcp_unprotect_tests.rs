//! Our SRTCP unprotect, cross-checked against `webrtc-srtp`'s SRTCP encrypt (the oracle).

use super::*;
use crate::rtc::rtcp;
use crate::rtc::srtp_inplace::tests::allocations;
use webrtc_srtp::context::Context;
use webrtc_srtp::protection_profile::ProtectionProfile;

fn master(profile: SrtpProfile) -> (Vec<u8>, Vec<u8>) {
    let key = (0..profile.key_len()).map(|i| (i * 11 + 1) as u8).collect();
    let salt = (0..profile.salt_len())
        .map(|i| (i * 17 + 4) as u8)
        .collect();
    (key, salt)
}

fn ours(profile: SrtpProfile) -> RtcpUnprotector {
    let (key, salt) = master(profile);
    RtcpUnprotector::new(profile, &key, &salt).unwrap()
}

fn oracle_sender(profile: SrtpProfile) -> Context {
    let (key, salt) = master(profile);
    Context::new(&key, &salt, ProtectionProfile::from(profile), None, None).unwrap()
}

fn compound(ssrc: u32, n: u32) -> Vec<u8> {
    let mut p = Vec::new();
    rtcp::build_sender_report(ssrc, u64::from(n) << 20, n * 90, n, n * 1000, &mut p);
    rtcp::build_pli(ssrc, 0x5555, &mut p);
    rtcp::build_nack(ssrc, 0x6666, &[n as u16, n as u16 + 3], &mut p);
    p
}

fn unprotect(rx: &mut RtcpUnprotector, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
    let mut buf = packet.to_vec();
    let len = rx.unprotect_in_place(&mut buf)?;
    buf.truncate(len);
    Ok(buf)
}

/// Where the E flag + index word sits in a protected packet of `profile`.
fn index_at(profile: SrtpProfile, len: usize) -> usize {
    match profile {
        SrtpProfile::AeadAes128Gcm | SrtpProfile::AeadAes256Gcm => len - 4,
        _ => len - 10 - 4,
    }
}

#[test]
fn packets_encrypted_by_webrtc_srtp_unprotect_to_the_same_bytes_for_two_ssrcs() {
    for profile in SrtpProfile::PREFERENCE {
        let mut sender = oracle_sender(profile);
        let mut rx = ours(profile);
        for n in 1..50 {
            for ssrc in [0x0102_0304, 0x0A0B_0C0D] {
                let plain = compound(ssrc, n);
                let protected = sender.encrypt_rtcp(&plain).unwrap();
                assert_eq!(protected.len(), plain.len() + rx.overhead(), "{profile:?}");
                let at = index_at(profile, protected.len());
                assert_eq!(protected[at] & 0x80, 0x80, "E flag");
                assert_eq!(
                    u32::from_be_bytes(protected[at..at + 4].try_into().unwrap()) & 0x7fff_ffff,
                    n,
                    "webrtc-srtp's SRTCP index starts at 1"
                );
                let got = unprotect(&mut rx, &protected)
                    .unwrap_or_else(|e| panic!("{profile:?} {n}: {e}"));
                assert_eq!(got, plain, "{profile:?} {n}");
            }
        }
        assert_eq!(rx.ssrcs(), 2);
    }
}

#[test]
fn replayed_srtcp_is_refused_and_late_srtcp_accepted() {
    for profile in SrtpProfile::PREFERENCE {
        let mut sender = oracle_sender(profile);
        let mut rx = ours(profile);
        let packets: Vec<_> = (1..5)
            .map(|n| sender.encrypt_rtcp(&compound(3, n)).unwrap())
            .collect();
        unprotect(&mut rx, &packets[2]).unwrap();
        unprotect(&mut rx, &packets[0]).unwrap();
        assert_eq!(unprotect(&mut rx, &packets[2]), Err(SrtpError::Replayed));
        assert_eq!(unprotect(&mut rx, &packets[0]), Err(SrtpError::Replayed));
        unprotect(&mut rx, &packets[1]).unwrap();
    }
}

#[test]
fn unencrypted_or_tampered_or_truncated_srtcp_is_refused_without_state() {
    for profile in SrtpProfile::PREFERENCE {
        let mut sender = oracle_sender(profile);
        let mut rx = ours(profile);
        let protected = sender.encrypt_rtcp(&compound(8, 1)).unwrap();
        let at = index_at(profile, protected.len());
        let mut forgeries = Vec::new();
        let mut clear = protected.to_vec();
        clear[at] &= 0x7f;
        forgeries.push((clear, Some(SrtpError::Unencrypted)));
        for i in [0, 1, 4, 7, 8, 20, at, at + 3, protected.len() - 1] {
            let mut f = protected.to_vec();
            f[i] ^= 0x01;
            forgeries.push((f, None));
        }
        for len in 0..protected.len() {
            forgeries.push((protected[..len].to_vec(), None));
        }
        for (f, expected) in &forgeries {
            let r = unprotect(&mut rx, f);
            assert!(r.is_err(), "{profile:?} {f:?}");
            if let Some(e) = expected {
                assert_eq!(r.as_ref().unwrap_err(), e);
            }
            assert_eq!(rx.ssrcs(), 0, "{profile:?}: no state for a forgery");
        }
        assert_eq!(unprotect(&mut rx, &protected).unwrap(), compound(8, 1));
    }
}

#[test]
fn the_srtcp_index_is_checked_against_the_window_per_ssrc() {
    // Our sender: webrtc-srtp numbers from 1 per SSRC; two SSRCs share index values freely.
    let profile = SrtpProfile::Aes128CmHmacSha1_80;
    let mut a = oracle_sender(profile);
    let mut b = oracle_sender(profile);
    let mut rx = ours(profile);
    let pa = a.encrypt_rtcp(&compound(1, 1)).unwrap();
    let pb = b.encrypt_rtcp(&compound(2, 1)).unwrap();
    unprotect(&mut rx, &pa).unwrap();
    unprotect(&mut rx, &pb).unwrap();
    // Index 1 again for SSRC 2 from another context with the same keys: a replay.
    let pb2 = oracle_sender(profile)
        .encrypt_rtcp(&compound(2, 1))
        .unwrap();
    assert_eq!(unprotect(&mut rx, &pb2), Err(SrtpError::Replayed));
}

#[test]
fn srtcp_beyond_the_ssrc_budget_is_dropped_and_counted() {
    let profile = SrtpProfile::AeadAes256Gcm;
    let mut sender = oracle_sender(profile);
    let mut rx = ours(profile);
    for ssrc in 0..(MAX_RECEIVE_SSRCS as u32 + 3) {
        let p = sender.encrypt_rtcp(&compound(100 + ssrc, 1)).unwrap();
        let r = unprotect(&mut rx, &p);
        assert_eq!(r.is_ok(), (ssrc as usize) < MAX_RECEIVE_SSRCS, "{ssrc}");
    }
    assert_eq!(rx.ssrcs(), MAX_RECEIVE_SSRCS);
    assert_eq!(rx.refused_ssrcs(), 3);
}

#[test]
fn unprotecting_srtcp_allocates_nothing_once_the_ssrc_is_known() {
    for profile in SrtpProfile::PREFERENCE {
        let mut sender = oracle_sender(profile);
        let mut rx = ours(profile);
        let inputs: Vec<_> = (1..100)
            .map(|n| sender.encrypt_rtcp(&compound(4, n)).unwrap().to_vec())
            .collect();
        let mut buf = Vec::with_capacity(1500);
        buf.extend_from_slice(&inputs[0]);
        rx.unprotect_in_place(&mut buf).unwrap();
        let before = allocations();
        for input in &inputs[1..] {
            buf.clear();
            buf.extend_from_slice(input);
            rx.unprotect_in_place(&mut buf).unwrap();
            buf.clear();
            buf.extend_from_slice(input);
            assert_eq!(rx.unprotect_in_place(&mut buf), Err(SrtpError::Replayed));
        }
        assert_eq!(allocations() - before, 0, "{profile:?}");
    }
}
