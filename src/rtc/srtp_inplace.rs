//! In-place SRTP protect for RTP: the payload is encrypted where it lies and the auth tag is
//! appended to the same `Vec`, so a caller that keeps spare capacity allocates nothing per packet.
//!
//! Profiles: AEAD_AES_128_GCM / AEAD_AES_256_GCM (RFC 7714) and AES_CM_128_HMAC_SHA1_80 / _32
//! (RFC 3711), with session keys from [`super::srtp_kdf`] (shared with the receive side).
//! Output is byte-for-byte what `webrtc-srtp`'s `Context::encrypt_rtp` produces for in-order
//! packets; the receive side is [`super::srtp_unprotect`], SRTCP protect stays on `webrtc-srtp`
//! (see [`super::srtp::SrtpSession`]).

use std::collections::HashMap;

use aes_gcm::aead::{AeadInPlace, Nonce};
use hmac::Mac;

use super::srtp::{SrtpError, SrtpProfile};
use super::srtp_kdf::{
    aes_cm_apply, gcm_rtp_nonce, rtp_header_len, SessionKeys, Stream, Transform,
};
use super::srtp_replay::estimate_index;

/// The longest auth tag any supported profile appends: reserve this much spare capacity.
pub const MAX_RTP_TAG_LEN: usize = 16;

/// The sending half of SRTP for RTP, with the rollover counter tracked per SSRC.
pub struct RtpProtector {
    keys: SessionKeys,
    /// Highest packet index (ROC << 16 | SEQ) protected so far, per SSRC.
    highest_index: HashMap<u32, u64>,
}

impl std::fmt::Debug for RtpProtector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtpProtector")
            .field("ssrcs", &self.highest_index.len())
            .finish_non_exhaustive()
    }
}

impl RtpProtector {
    pub fn new(
        profile: SrtpProfile,
        master_key: &[u8],
        master_salt: &[u8],
    ) -> Result<Self, SrtpError> {
        Ok(Self {
            keys: SessionKeys::derive(profile, master_key, master_salt, Stream::Srtp)?,
            highest_index: HashMap::new(),
        })
    }

    /// Bytes [`Self::protect_in_place`] appends.
    pub fn tag_len(&self) -> usize {
        self.keys.transform.tag_len()
    }

    /// The rollover counter of the newest packet protected for `ssrc`.
    pub fn rollover_counter(&self, ssrc: u32) -> Option<u32> {
        self.highest_index.get(&ssrc).map(|i| (i >> 16) as u32)
    }

    /// The packet index (ROC << 16 | SEQ) of `seq` (RFC 3711 §3.3.1 / appendix A): the one
    /// nearest the highest index sent so far; the first packet of an SSRC starts at ROC 0.
    fn packet_index(&mut self, ssrc: u32, seq: u16) -> Result<u64, SrtpError> {
        let Some(highest) = self.highest_index.get_mut(&ssrc) else {
            // Allocates (once per SSRC) only when the map grows.
            self.highest_index.insert(ssrc, seq as u64);
            return Ok(seq as u64);
        };
        // RFC 3711 §9.2: 2^48 packets under one key; the session must be rekeyed.
        let index = estimate_index(*highest, seq).ok_or(SrtpError::IndexExhausted)?;
        if index > *highest {
            *highest = index;
        }
        Ok(index)
    }

    /// Protects an RTP packet in place: encrypts the payload (and padding) in `packet`, then
    /// appends the auth tag ([`Self::tag_len`] bytes). No allocation once the SSRC has been
    /// seen, if `packet` has at least [`MAX_RTP_TAG_LEN`] bytes of spare capacity (otherwise
    /// the `Vec` grows). On error `packet` is unchanged.
    pub fn protect_in_place(&mut self, packet: &mut Vec<u8>) -> Result<(), SrtpError> {
        let header_len = rtp_header_len(packet).ok_or(SrtpError::Malformed)?;
        let seq = u16::from_be_bytes([packet[2], packet[3]]);
        let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
        let index = self.packet_index(ssrc, seq)?;
        let roc = (index >> 16) as u32;
        let salt = &self.keys.salt;
        match &self.keys.transform {
            Transform::Gcm128(cipher) => {
                seal_gcm(&**cipher, salt, ssrc, roc, seq, packet, header_len)
            }
            Transform::Gcm256(cipher) => {
                seal_gcm(&**cipher, salt, ssrc, roc, seq, packet, header_len)
            }
            Transform::AesCmHmacSha1 { aes, hmac, tag_len } => {
                aes_cm_apply(aes, salt, ssrc, index, &mut packet[header_len..]);
                // Tag = HMAC(k_a, header || encrypted payload || ROC), truncated.
                let mut mac = (**hmac).clone();
                mac.update(packet);
                mac.update(&roc.to_be_bytes());
                let tag = mac.finalize().into_bytes();
                packet.extend_from_slice(&tag[..*tag_len]);
                Ok(())
            }
        }
    }
}

/// RFC 7714 §8: IV = salt XOR (0^16 || SSRC || ROC || SEQ), AAD = the RTP header, 16-byte tag.
fn seal_gcm<C: AeadInPlace>(
    cipher: &C,
    salt: &[u8; 14],
    ssrc: u32,
    roc: u32,
    seq: u16,
    packet: &mut Vec<u8>,
    header_len: usize,
) -> Result<(), SrtpError> {
    let iv = gcm_rtp_nonce(salt, ssrc, roc, seq);
    let (header, payload) = packet.split_at_mut(header_len);
    let tag = cipher
        .encrypt_in_place_detached(Nonce::<C>::from_slice(&iv), header, payload)
        .map_err(|_| SrtpError::Crypto("AES-GCM encrypt".into()))?;
    packet.extend_from_slice(&tag);
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;
    use webrtc_srtp::context::Context;
    use webrtc_srtp::option::srtp_replay_protection;
    use webrtc_srtp::protection_profile::ProtectionProfile;

    /// Counts allocations made by the current thread (tests run in parallel threads).
    struct CountingAllocator;

    thread_local! {
        static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    }

    unsafe impl GlobalAlloc for CountingAllocator {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
            System.alloc(layout)
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            System.dealloc(ptr, layout)
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
            System.realloc(ptr, layout, new_size)
        }
    }

    #[global_allocator]
    static GLOBAL: CountingAllocator = CountingAllocator;

    pub(in crate::rtc) fn allocations() -> u64 {
        ALLOCATIONS.with(|c| c.get())
    }

    fn master(profile: SrtpProfile) -> (Vec<u8>, Vec<u8>) {
        let key = (0..profile.key_len()).map(|i| (i * 13 + 5) as u8).collect();
        let salt = (0..profile.salt_len())
            .map(|i| (i * 29 + 1) as u8)
            .collect();
        (key, salt)
    }

    fn protector(profile: SrtpProfile) -> RtpProtector {
        let (key, salt) = master(profile);
        RtpProtector::new(profile, &key, &salt).unwrap()
    }

    fn webrtc_context(profile: SrtpProfile, replay_protection: bool) -> Context {
        let (key, salt) = master(profile);
        let opt = replay_protection.then(|| srtp_replay_protection(512));
        Context::new(&key, &salt, ProtectionProfile::from(profile), opt, None).unwrap()
    }

    /// Varied headers: plain, with CSRCs, with a one-byte extension block, with padding.
    fn rtp_packet(ssrc: u32, seq: u16) -> Vec<u8> {
        let kind = seq % 4;
        let mut p = vec![0x80, 96];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&(seq as u32 * 3000).to_be_bytes());
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
        p.extend((0..(50 + seq % 97)).map(|i| (i ^ seq) as u8));
        if kind == 3 {
            p[0] |= 0x20;
            p.extend_from_slice(&[0, 0, 0, 4]);
        }
        p.reserve(MAX_RTP_TAG_LEN);
        p
    }

    /// Two SSRCs interleaved, each wrapping its sequence number (ROC 0 → 1) at a different time.
    fn interleaved_across_a_wrap() -> Vec<(u32, u16)> {
        let mut out = Vec::new();
        for i in 0..64u16 {
            out.push((0x1111_1111, 0xFFE0u16.wrapping_add(i)));
            out.push((0x2222_2222, 0xFFF8u16.wrapping_add(i)));
        }
        out
    }

    #[test]
    fn packets_protected_in_place_are_unprotected_by_webrtc_srtp_across_a_wrap_for_two_ssrcs() {
        for profile in SrtpProfile::PREFERENCE {
            let mut ours = protector(profile);
            let mut receiver = webrtc_context(profile, true);
            for (ssrc, seq) in interleaved_across_a_wrap() {
                let plain = rtp_packet(ssrc, seq);
                let mut packet = plain.clone();
                ours.protect_in_place(&mut packet).unwrap();
                assert_eq!(packet.len(), plain.len() + ours.tag_len(), "{profile:?}");
                let decrypted = receiver
                    .decrypt_rtp(&packet)
                    .unwrap_or_else(|e| panic!("{profile:?} ssrc {ssrc:x} seq {seq}: {e}"));
                assert_eq!(&decrypted[..], &plain[..], "{profile:?} seq {seq}");
            }
            assert_eq!(ours.rollover_counter(0x1111_1111), Some(1));
            assert_eq!(ours.rollover_counter(0x2222_2222), Some(1));
        }
    }

    #[test]
    fn protected_bytes_equal_what_webrtc_srtp_encrypt_produces() {
        for profile in SrtpProfile::PREFERENCE {
            let mut ours = protector(profile);
            let mut theirs = webrtc_context(profile, false);
            for (ssrc, seq) in interleaved_across_a_wrap() {
                let plain = rtp_packet(ssrc, seq);
                let expected = theirs.encrypt_rtp(&plain).unwrap();
                let mut packet = plain;
                ours.protect_in_place(&mut packet).unwrap();
                assert_eq!(&packet[..], &expected[..], "{profile:?} seq {seq}");
            }
        }
    }

    #[test]
    fn a_late_packet_from_before_the_wrap_is_protected_with_the_previous_rollover_counter() {
        for profile in SrtpProfile::PREFERENCE {
            let mut ours = protector(profile);
            let mut receiver = webrtc_context(profile, true);
            for seq in [0xFFFD, 0xFFFF, 0, 1, 0xFFFE, 2] {
                let plain = rtp_packet(7, seq);
                let mut packet = plain.clone();
                ours.protect_in_place(&mut packet).unwrap();
                let decrypted = receiver.decrypt_rtp(&packet).unwrap();
                assert_eq!(&decrypted[..], &plain[..], "{profile:?} seq {seq}");
            }
            assert_eq!(ours.rollover_counter(7), Some(1));
        }
    }

    #[test]
    fn malformed_packets_are_rejected_and_left_unchanged() {
        let mut ours = protector(SrtpProfile::AeadAes128Gcm);
        let mut with_ext = rtp_packet(9, 2);
        with_ext.truncate(16 + 4); // extension block claims 8 bytes, has 4
        for mut bad in [vec![], vec![0x80; 11], vec![0x40; 40], with_ext] {
            let before = bad.clone();
            assert_eq!(
                ours.protect_in_place(&mut bad),
                Err(SrtpError::Malformed),
                "{before:?}"
            );
            assert_eq!(bad, before);
        }
        assert_eq!(ours.rollover_counter(9), None);
    }

    #[test]
    fn protecting_in_place_allocates_nothing_after_the_first_packet_of_an_ssrc() {
        let before = allocations();
        drop(std::hint::black_box(Vec::<u8>::with_capacity(64)));
        assert_eq!(
            allocations() - before,
            1,
            "the counter sees this thread's allocations"
        );
        for profile in SrtpProfile::PREFERENCE {
            let mut ours = protector(profile);
            let mut packet = Vec::with_capacity(2048);
            let fill = |packet: &mut Vec<u8>, ssrc: u32, seq: u16| {
                packet.clear();
                packet.extend_from_slice(&rtp_packet(ssrc, seq));
            };
            let ssrcs = [0x1111_1111u32, 0x2222_2222];
            for ssrc in ssrcs {
                fill(&mut packet, ssrc, 0xFFE0);
                ours.protect_in_place(&mut packet).unwrap();
            }
            let mut inputs = Vec::new();
            for (ssrc, seq) in interleaved_across_a_wrap() {
                fill(&mut packet, ssrc, seq);
                inputs.push(packet.clone());
            }
            let mut counted = 0;
            for input in &inputs {
                packet.clear();
                packet.extend_from_slice(input);
                let before = allocations();
                ours.protect_in_place(&mut packet).unwrap();
                counted += allocations() - before;
            }
            assert_eq!(
                counted,
                0,
                "{profile:?}: allocations in {} protects",
                inputs.len()
            );
        }
    }
}
