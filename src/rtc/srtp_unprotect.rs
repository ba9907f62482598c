//! In-place SRTP unprotect for received RTP (RFC 3711, RFC 7714), authenticate first.
//!
//! Why our own: `webrtc-srtp` parses the RTP header with the `rtp` crate before it checks the
//! tag (a hostile header-extension element panicked there, killing the room), creates per-SSRC
//! state with a replay window for every SSRC it sees before authenticating (junk grew memory
//! without bound) and allocates a fresh buffer per packet. Here, in this order:
//!
//! 1. only lengths are read (fixed header, CSRC count, extension block length, tag length);
//! 2. the packet index is estimated from the SSRC's state, which is only read;
//! 3. the tag is checked in constant time (HMAC-SHA1 or the AES-GCM tag, which the AEAD checks
//!    before it decrypts) — a packet that fails changes nothing;
//! 4. the replay window is checked, the payload decrypted in place;
//! 5. only then is per-SSRC state created or advanced, and new SSRCs count against a fixed
//!    budget per session ([`MAX_RECEIVE_SSRCS`]): beyond it, authenticated packets of new SSRCs
//!    are dropped (and counted), so nothing grows with what a peer sends.
//!
//! No allocation per packet: the caller owns the buffer; the only allocation is the per-SSRC
//! map growing when a new SSRC authenticates.

use aes_gcm::aead::{AeadInPlace, Nonce, Tag};
use hmac::Mac;

use super::srtp::{SrtpError, SrtpProfile};
use super::srtp_kdf::{
    aes_cm_apply, gcm_rtp_nonce, rtp_header_len, SessionKeys, Stream, Transform,
};
pub use super::srtp_replay::MAX_RECEIVE_SSRCS;
use super::srtp_replay::{estimate_index, ReceiveStreams};

/// The receiving half of SRTP for RTP: per-SSRC rollover counters and replay windows.
pub struct RtpUnprotector {
    keys: SessionKeys,
    streams: ReceiveStreams,
}

impl std::fmt::Debug for RtpUnprotector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtpUnprotector")
            .field("streams", &self.streams)
            .finish_non_exhaustive()
    }
}

impl RtpUnprotector {
    pub fn new(
        profile: SrtpProfile,
        master_key: &[u8],
        master_salt: &[u8],
    ) -> Result<Self, SrtpError> {
        Ok(Self {
            keys: SessionKeys::derive(profile, master_key, master_salt, Stream::Srtp)?,
            streams: ReceiveStreams::default(),
        })
    }

    /// Bytes of tag at the end of each protected packet.
    pub fn tag_len(&self) -> usize {
        self.keys.transform.tag_len()
    }

    /// SSRCs with receive state (each authenticated at least once).
    pub fn ssrcs(&self) -> usize {
        self.streams.len()
    }

    /// Authenticated packets dropped because their SSRC was beyond [`MAX_RECEIVE_SSRCS`].
    pub fn refused_ssrcs(&self) -> u64 {
        self.streams.refused()
    }

    /// The rollover counter of the newest packet received for `ssrc`.
    pub fn rollover_counter(&self, ssrc: u32) -> Option<u32> {
        self.streams.get(ssrc).map(|w| (w.highest() >> 16) as u32)
    }

    /// Authenticates and decrypts the SRTP packet in `packet` where it lies; returns the
    /// length of the RTP packet (the tag stripped). On error no state changed (`packet` may
    /// hold garbage then).
    pub fn unprotect_in_place(&mut self, packet: &mut [u8]) -> Result<usize, SrtpError> {
        let header_len = rtp_header_len(packet).ok_or(SrtpError::Malformed)?;
        let tag_len = self.tag_len();
        let plain_len = packet
            .len()
            .checked_sub(tag_len)
            .filter(|&n| n >= header_len)
            .ok_or(SrtpError::Malformed)?;
        let seq = u16::from_be_bytes([packet[2], packet[3]]);
        let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
        let index = match self.streams.get(ssrc) {
            Some(w) => estimate_index(w.highest(), seq).ok_or(SrtpError::IndexExhausted)?,
            // A stream starts at ROC 0 (RFC 3711 §3.3.1; every WebRTC sender does).
            None => u64::from(seq),
        };
        // Cheap and read-only, so before the MAC: a replay costs no crypto.
        if self.streams.is_replay(ssrc, index) {
            return Err(SrtpError::Replayed);
        }
        let roc = (index >> 16) as u32;
        match &self.keys.transform {
            Transform::AesCmHmacSha1 { aes, hmac, .. } => {
                // Tag = HMAC(k_a, header || encrypted payload || ROC), truncated (§4.2).
                let mut mac = (**hmac).clone();
                mac.update(&packet[..plain_len]);
                mac.update(&roc.to_be_bytes());
                mac.verify_truncated_left(&packet[plain_len..])
                    .map_err(|_| SrtpError::AuthFailed)?;
                aes_cm_apply(
                    aes,
                    &self.keys.salt,
                    ssrc,
                    index,
                    &mut packet[header_len..plain_len],
                );
            }
            Transform::Gcm128(cipher) => open_gcm(
                &**cipher,
                &self.keys.salt,
                ssrc,
                roc,
                seq,
                packet,
                header_len,
            )?,
            Transform::Gcm256(cipher) => open_gcm(
                &**cipher,
                &self.keys.salt,
                ssrc,
                roc,
                seq,
                packet,
                header_len,
            )?,
        }
        self.streams.accept(ssrc, index)?;
        Ok(plain_len)
    }
}

/// RFC 7714 §8: AAD = the RTP header; the AEAD checks the tag before it decrypts.
fn open_gcm<C: AeadInPlace>(
    cipher: &C,
    salt: &[u8; 14],
    ssrc: u32,
    roc: u32,
    seq: u16,
    packet: &mut [u8],
    header_len: usize,
) -> Result<(), SrtpError> {
    let nonce = gcm_rtp_nonce(salt, ssrc, roc, seq);
    let (header, rest) = packet.split_at_mut(header_len);
    let tag_at = rest
        .len()
        .checked_sub(super::srtp_kdf::GCM_TAG_LEN)
        .ok_or(SrtpError::Malformed)?;
    let (payload, tag) = rest.split_at_mut(tag_at);
    cipher
        .decrypt_in_place_detached(
            Nonce::<C>::from_slice(&nonce),
            header,
            payload,
            Tag::<C>::from_slice(tag),
        )
        .map_err(|_| SrtpError::AuthFailed)
}

#[cfg(test)]
#[path = "srtp_unprotect_tests.rs"]
mod tests;
