//! In-place SRTCP unprotect (RFC 3711 §3.4, RFC 7714 §9), authenticate first, with the same
//! rules as [`super::srtp_unprotect`]: lengths only before the tag check, no state for a packet
//! that fails, per-SSRC replay windows created only after authentication and within
//! [`MAX_RECEIVE_SSRCS`].
//!
//! Layouts (the first 8 bytes — RTCP header and sender SSRC — are always in clear):
//! - AES-CM: `header(8) | encrypted | E+index(4) | tag(10)`, the HMAC covering all but the tag;
//! - AES-GCM: `header(8) | encrypted | tag(16) | E+index(4)`, AAD = header || E+index.
//!
//! SRTCP without the E (encryption) flag is refused: we negotiate encrypted SRTCP, and with
//! E = 0 `webrtc-srtp` (the browser side of our tests) skips the tag check, so a peer sending it
//! is broken or hostile.

use aes_gcm::aead::{AeadInPlace, Nonce, Tag};
use hmac::Mac;

use super::srtp::{SrtpError, SrtpProfile};
use super::srtp_kdf::{aes_cm_apply, gcm_rtcp_nonce, SessionKeys, Stream, Transform, GCM_TAG_LEN};
use super::srtp_replay::ReceiveStreams;
pub use super::srtp_replay::MAX_RECEIVE_SSRCS;

const RTCP_HEADER_AND_SSRC_LEN: usize = 8;
const SRTCP_INDEX_LEN: usize = 4;
const E_FLAG: u8 = 0x80;

/// The receiving half of SRTCP: per-SSRC replay windows over the explicit SRTCP index.
pub struct RtcpUnprotector {
    keys: SessionKeys,
    streams: ReceiveStreams,
}

impl std::fmt::Debug for RtcpUnprotector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtcpUnprotector")
            .field("streams", &self.streams)
            .finish_non_exhaustive()
    }
}

impl RtcpUnprotector {
    pub fn new(
        profile: SrtpProfile,
        master_key: &[u8],
        master_salt: &[u8],
    ) -> Result<Self, SrtpError> {
        Ok(Self {
            keys: SessionKeys::derive(profile, master_key, master_salt, Stream::Srtcp)?,
            streams: ReceiveStreams::default(),
        })
    }

    /// Bytes SRTCP adds to an RTCP packet (index word and tag).
    pub fn overhead(&self) -> usize {
        SRTCP_INDEX_LEN + self.keys.transform.tag_len()
    }

    /// SSRCs with receive state (each authenticated at least once).
    pub fn ssrcs(&self) -> usize {
        self.streams.len()
    }

    /// Authenticated packets dropped because their SSRC was beyond [`MAX_RECEIVE_SSRCS`].
    pub fn refused_ssrcs(&self) -> u64 {
        self.streams.refused()
    }

    /// Authenticates and decrypts the SRTCP packet in `packet` where it lies; returns the
    /// length of the (compound) RTCP packet. On error no state changed.
    pub fn unprotect_in_place(&mut self, packet: &mut [u8]) -> Result<usize, SrtpError> {
        let plain_len = packet
            .len()
            .checked_sub(self.overhead())
            .filter(|&n| n >= RTCP_HEADER_AND_SSRC_LEN)
            .ok_or(SrtpError::Malformed)?;
        if packet[0] >> 6 != 2 {
            return Err(SrtpError::Malformed);
        }
        let tag_len = self.keys.transform.tag_len();
        let index_at = match self.keys.transform {
            Transform::AesCmHmacSha1 { .. } => plain_len,
            Transform::Gcm128(_) | Transform::Gcm256(_) => plain_len + tag_len,
        };
        let word: [u8; 4] = packet[index_at..index_at + SRTCP_INDEX_LEN]
            .try_into()
            .map_err(|_| SrtpError::Malformed)?;
        if word[0] & E_FLAG == 0 {
            return Err(SrtpError::Unencrypted);
        }
        let index = u32::from_be_bytes(word) & 0x7fff_ffff;
        let ssrc = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        if self.streams.is_replay(ssrc, u64::from(index)) {
            return Err(SrtpError::Replayed);
        }
        match &self.keys.transform {
            Transform::AesCmHmacSha1 { aes, hmac, .. } => {
                let authenticated = packet.len() - tag_len;
                let mut mac = (**hmac).clone();
                mac.update(&packet[..authenticated]);
                mac.verify_truncated_left(&packet[authenticated..])
                    .map_err(|_| SrtpError::AuthFailed)?;
                aes_cm_apply(
                    aes,
                    &self.keys.salt,
                    ssrc,
                    u64::from(index),
                    &mut packet[RTCP_HEADER_AND_SSRC_LEN..plain_len],
                );
            }
            Transform::Gcm128(cipher) => open_gcm(
                &**cipher,
                &self.keys.salt,
                ssrc,
                index,
                word,
                packet,
                plain_len,
            )?,
            Transform::Gcm256(cipher) => open_gcm(
                &**cipher,
                &self.keys.salt,
                ssrc,
                index,
                word,
                packet,
                plain_len,
            )?,
        }
        self.streams.accept(ssrc, u64::from(index))?;
        Ok(plain_len)
    }
}

/// RFC 7714 §9.1: AAD = the first 8 bytes || the E+index word; tag checked before decryption.
fn open_gcm<C: AeadInPlace>(
    cipher: &C,
    salt: &[u8; 14],
    ssrc: u32,
    index: u32,
    word: [u8; 4],
    packet: &mut [u8],
    plain_len: usize,
) -> Result<(), SrtpError> {
    let nonce = gcm_rtcp_nonce(salt, ssrc, index);
    let mut aad = [0u8; RTCP_HEADER_AND_SSRC_LEN + SRTCP_INDEX_LEN];
    aad[..RTCP_HEADER_AND_SSRC_LEN].copy_from_slice(&packet[..RTCP_HEADER_AND_SSRC_LEN]);
    aad[RTCP_HEADER_AND_SSRC_LEN..].copy_from_slice(&word);
    let (payload, rest) =
        packet[RTCP_HEADER_AND_SSRC_LEN..].split_at_mut(plain_len - RTCP_HEADER_AND_SSRC_LEN);
    let tag = rest.get(..GCM_TAG_LEN).ok_or(SrtpError::Malformed)?;
    cipher
        .decrypt_in_place_detached(
            Nonce::<C>::from_slice(&nonce),
            &aad,
            payload,
            Tag::<C>::from_slice(tag),
        )
        .map_err(|_| SrtpError::AuthFailed)
}

#[cfg(test)]
#[path = "srtcp_unprotect_tests.rs"]
mod tests;
