//! SRTP/SRTCP (RFC 3711, RFC 7714) for one transport, over `webrtc-srtp`'s `Context`.
//!
//! Keys come from the DTLS handshake's exported keying material (RFC 5764 §4.2); see
//! [`split_keying_material`].
//!
//! RTP protect runs on our own in-place transform ([`super::srtp_inplace`]) so the forwarding
//! path allocates nothing per packet. Everything received (SRTP and SRTCP) is unprotected in
//! place by ours too ([`super::srtp_unprotect`], [`super::srtcp_unprotect`]): authenticated
//! before any byte of it is interpreted and before any per-SSRC state is created. Only SRTCP
//! protect (a few packets a second) stays on `webrtc-srtp`.

use bytes::Bytes;
use webrtc_srtp::context::Context;
use webrtc_srtp::protection_profile::ProtectionProfile;

use super::srtcp_unprotect::RtcpUnprotector;
use super::srtp_inplace::RtpProtector;
pub use super::srtp_inplace::MAX_RTP_TAG_LEN;
use super::srtp_unprotect::RtpUnprotector;
pub use super::srtp_unprotect::MAX_RECEIVE_SSRCS;

const RTCP_HEADER_AND_SSRC_LEN: usize = 8;
/// Room for one full datagram in the receive buffer (see [`SrtpSession::take_rx_buffer`]).
const RX_BUFFER_LEN: usize = 2048;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SrtpError {
    #[error("keying material is {got} bytes, expected {expected}")]
    KeyingMaterialLength { expected: usize, got: usize },
    #[error("packet too short or not RTP/RTCP")]
    Malformed,
    #[error("SRTCP packet without the encryption flag")]
    Unencrypted,
    // The receive errors below allocate nothing: junk is dropped at the cost of the check.
    #[error("authentication failed")]
    AuthFailed,
    #[error("replayed or too old")]
    Replayed,
    #[error("authenticated, but beyond the session's SSRC budget")]
    TooManySsrcs,
    #[error("SRTP packet index exhausted (2^48 packets under one key)")]
    IndexExhausted,
    #[error("srtp: {0}")]
    Crypto(String),
}

impl From<webrtc_srtp::Error> for SrtpError {
    fn from(e: webrtc_srtp::Error) -> Self {
        Self::Crypto(e.to_string())
    }
}

/// The SRTP protection profiles the SFU negotiates, in its order of preference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SrtpProfile {
    AeadAes256Gcm,
    AeadAes128Gcm,
    Aes128CmHmacSha1_80,
    Aes128CmHmacSha1_32,
}

impl SrtpProfile {
    pub const PREFERENCE: [SrtpProfile; 4] = [
        SrtpProfile::AeadAes256Gcm,
        SrtpProfile::AeadAes128Gcm,
        SrtpProfile::Aes128CmHmacSha1_80,
        SrtpProfile::Aes128CmHmacSha1_32,
    ];

    pub fn key_len(self) -> usize {
        ProtectionProfile::from(self).key_len()
    }

    pub fn salt_len(self) -> usize {
        ProtectionProfile::from(self).salt_len()
    }

    /// The profile's id in the DTLS use_srtp extension (IANA "DTLS-SRTP Protection Profiles").
    pub fn iana_id(self) -> u16 {
        match self {
            SrtpProfile::Aes128CmHmacSha1_80 => 0x0001,
            SrtpProfile::Aes128CmHmacSha1_32 => 0x0002,
            SrtpProfile::AeadAes128Gcm => 0x0007,
            SrtpProfile::AeadAes256Gcm => 0x0008,
        }
    }

    pub fn from_iana_id(id: u16) -> Option<Self> {
        Self::PREFERENCE.into_iter().find(|p| p.iana_id() == id)
    }
}

impl From<SrtpProfile> for ProtectionProfile {
    fn from(p: SrtpProfile) -> Self {
        match p {
            SrtpProfile::AeadAes256Gcm => ProtectionProfile::AeadAes256Gcm,
            SrtpProfile::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
            SrtpProfile::Aes128CmHmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
            SrtpProfile::Aes128CmHmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
        }
    }
}

/// Master keys and salts for both directions; "local" protects what we send.
#[derive(Clone, PartialEq, Eq)]
pub struct SrtpKeys {
    pub profile: SrtpProfile,
    pub local_key: Vec<u8>,
    pub local_salt: Vec<u8>,
    pub remote_key: Vec<u8>,
    pub remote_salt: Vec<u8>,
}

impl std::fmt::Debug for SrtpKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys never go to logs.
        f.debug_struct("SrtpKeys")
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

/// Splits the DTLS exporter output (label "EXTRACTOR-dtls_srtp", length 2 * (key + salt)),
/// laid out client key | server key | client salt | server salt.
pub fn split_keying_material(
    profile: SrtpProfile,
    material: &[u8],
    we_are_dtls_client: bool,
) -> Result<SrtpKeys, SrtpError> {
    let (k, s) = (profile.key_len(), profile.salt_len());
    let expected = 2 * (k + s);
    if material.len() != expected {
        return Err(SrtpError::KeyingMaterialLength {
            expected,
            got: material.len(),
        });
    }
    let client_key = &material[..k];
    let server_key = &material[k..2 * k];
    let client_salt = &material[2 * k..2 * k + s];
    let server_salt = &material[2 * k + s..];
    let (local_key, local_salt, remote_key, remote_salt) = if we_are_dtls_client {
        (client_key, client_salt, server_key, server_salt)
    } else {
        (server_key, server_salt, client_key, client_salt)
    };
    Ok(SrtpKeys {
        profile,
        local_key: local_key.to_vec(),
        local_salt: local_salt.to_vec(),
        remote_key: remote_key.to_vec(),
        remote_salt: remote_salt.to_vec(),
    })
}

/// Both directions of one transport's SRTP: `rtp_tx` protects the RTP we send (in place),
/// `tx` the RTCP we send; `rtp_rx` / `rtcp_rx` unprotect (in place, replay-protected) what we
/// receive.
pub struct SrtpSession {
    profile: ProtectionProfile,
    rtp_tx: RtpProtector,
    tx: Context,
    rtp_rx: RtpUnprotector,
    rtcp_rx: RtcpUnprotector,
    /// The buffer received packets are decrypted in, reused for every packet.
    rx_buf: Vec<u8>,
}

impl std::fmt::Debug for SrtpSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpSession")
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

impl SrtpSession {
    pub fn new(keys: &SrtpKeys) -> Result<Self, SrtpError> {
        let profile = ProtectionProfile::from(keys.profile);
        let rtp_tx = RtpProtector::new(keys.profile, &keys.local_key, &keys.local_salt)?;
        let tx = Context::new(&keys.local_key, &keys.local_salt, profile, None, None)?;
        let rtp_rx = RtpUnprotector::new(keys.profile, &keys.remote_key, &keys.remote_salt)?;
        let rtcp_rx = RtcpUnprotector::new(keys.profile, &keys.remote_key, &keys.remote_salt)?;
        Ok(Self {
            profile,
            rtp_tx,
            tx,
            rtp_rx,
            rtcp_rx,
            rx_buf: Vec::with_capacity(RX_BUFFER_LEN),
        })
    }

    /// Authenticates and decrypts the SRTP packet in `packet` in place (the tag is truncated
    /// away); replays and SSRCs beyond [`MAX_RECEIVE_SSRCS`] are rejected. Allocates nothing.
    /// On error no receive state changed; `packet`'s content is unspecified.
    pub fn unprotect_rtp(&mut self, packet: &mut Vec<u8>) -> Result<(), SrtpError> {
        let len = self.rtp_rx.unprotect_in_place(packet)?;
        packet.truncate(len);
        Ok(())
    }

    /// [`Self::unprotect_rtp`] for SRTCP; unencrypted SRTCP (E = 0) is rejected too.
    pub fn unprotect_rtcp(&mut self, packet: &mut Vec<u8>) -> Result<(), SrtpError> {
        let len = self.rtcp_rx.unprotect_in_place(packet)?;
        packet.truncate(len);
        Ok(())
    }

    /// The session's receive buffer, to copy a datagram into and unprotect in place. Give it
    /// back with [`Self::restore_rx_buffer`] so the next packet reuses its capacity (taking
    /// it leaves an empty `Vec`, which allocates nothing).
    pub fn take_rx_buffer(&mut self) -> Vec<u8> {
        let mut buf = std::mem::take(&mut self.rx_buf);
        buf.clear();
        buf
    }

    pub fn restore_rx_buffer(&mut self, buf: Vec<u8>) {
        if buf.capacity() >= self.rx_buf.capacity() {
            self.rx_buf = buf;
        }
    }

    /// SSRCs with receive state (SRTP, SRTCP); each authenticated at least once.
    pub fn receive_ssrcs(&self) -> (usize, usize) {
        (self.rtp_rx.ssrcs(), self.rtcp_rx.ssrcs())
    }

    /// Authenticated packets dropped because their SSRC was beyond the budget.
    pub fn refused_ssrc_packets(&self) -> u64 {
        self.rtp_rx.refused_ssrcs() + self.rtcp_rx.refused_ssrcs()
    }

    /// Decrypts and authenticates an SRTP packet into a new buffer (for tools and tests; the
    /// packet path uses [`Self::unprotect_rtp`]).
    pub fn decrypt_rtp(&mut self, packet: &[u8]) -> Result<Bytes, SrtpError> {
        let mut buf = packet.to_vec();
        self.unprotect_rtp(&mut buf)?;
        Ok(Bytes::from(buf))
    }

    /// Decrypts and authenticates an SRTCP packet into a new buffer (see [`Self::decrypt_rtp`]).
    pub fn decrypt_rtcp(&mut self, packet: &[u8]) -> Result<Bytes, SrtpError> {
        let mut buf = packet.to_vec();
        self.unprotect_rtcp(&mut buf)?;
        Ok(Bytes::from(buf))
    }

    /// Encrypts an RTP packet into a new buffer; see [`Self::protect_rtp_in_place`], whose
    /// rollover counters it shares.
    pub fn encrypt_rtp(&mut self, packet: &[u8]) -> Result<Bytes, SrtpError> {
        super::rtp::parse_rtp(packet).ok_or(SrtpError::Malformed)?;
        let mut out = Vec::with_capacity(packet.len() + self.rtp_tx.tag_len());
        out.extend_from_slice(packet);
        self.rtp_tx.protect_in_place(&mut out)?;
        Ok(Bytes::from(out))
    }

    /// Protects an RTP packet in place: encrypts its payload where it lies and appends the auth
    /// tag (up to [`MAX_RTP_TAG_LEN`] bytes). Allocates nothing once the SSRC has been seen if
    /// `packet` has that much spare capacity. The rollover counter is inferred per SSRC from the
    /// sequence numbers (reordering by less than 2^15 is fine). On error `packet` is unchanged.
    pub fn protect_rtp_in_place(&mut self, packet: &mut Vec<u8>) -> Result<(), SrtpError> {
        self.rtp_tx.protect_in_place(packet)
    }

    /// Encrypts an RTCP (compound) packet.
    pub fn encrypt_rtcp(&mut self, packet: &[u8]) -> Result<Bytes, SrtpError> {
        if packet.len() < RTCP_HEADER_AND_SSRC_LEN || packet[0] >> 6 != 2 {
            return Err(SrtpError::Malformed);
        }
        Ok(self.tx.encrypt_rtcp(packet)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn material(profile: SrtpProfile) -> Vec<u8> {
        (0..2 * (profile.key_len() + profile.salt_len()))
            .map(|i| i as u8)
            .collect()
    }

    /// Our session (DTLS server) and the browser's (DTLS client) from the same material.
    fn pair(profile: SrtpProfile) -> (SrtpSession, SrtpSession) {
        let m = material(profile);
        let ours = split_keying_material(profile, &m, false).unwrap();
        let theirs = split_keying_material(profile, &m, true).unwrap();
        (
            SrtpSession::new(&ours).unwrap(),
            SrtpSession::new(&theirs).unwrap(),
        )
    }

    fn rtp_packet(seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 96, 0, 0, 0, 0, 0x10, 0, 0x12, 0x34, 0x56, 0x78];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p.extend((0..100).map(|i| i as u8));
        p
    }

    fn rtcp_packet() -> Vec<u8> {
        let mut p = Vec::new();
        super::super::rtcp::build_sender_report(0x1234_5678, 1, 2, 3, 4, &mut p);
        super::super::rtcp::build_pli(0x1234_5678, 9, &mut p);
        p
    }

    #[test]
    fn keying_material_is_split_client_key_server_key_client_salt_server_salt() {
        let p = SrtpProfile::Aes128CmHmacSha1_80;
        let m = material(p);
        let client = split_keying_material(p, &m, true).unwrap();
        assert_eq!(client.local_key, m[0..16]);
        assert_eq!(client.remote_key, m[16..32]);
        assert_eq!(client.local_salt, m[32..46]);
        assert_eq!(client.remote_salt, m[46..60]);
        let server = split_keying_material(p, &m, false).unwrap();
        assert_eq!(server.local_key, client.remote_key);
        assert_eq!(server.local_salt, client.remote_salt);
        assert_eq!(server.remote_key, client.local_key);
        assert_eq!(server.remote_salt, client.local_salt);
    }

    #[test]
    fn keying_material_of_the_wrong_length_is_rejected() {
        let p = SrtpProfile::AeadAes256Gcm;
        assert_eq!(
            split_keying_material(p, &[0; 10], true),
            Err(SrtpError::KeyingMaterialLength {
                expected: 88,
                got: 10
            })
        );
    }

    #[test]
    fn profiles_have_the_rfc_key_and_salt_lengths_and_iana_ids() {
        use SrtpProfile::*;
        let lens: Vec<_> = SrtpProfile::PREFERENCE
            .iter()
            .map(|p| (p.key_len(), p.salt_len()))
            .collect();
        assert_eq!(lens, vec![(32, 12), (16, 12), (16, 14), (16, 14)]);
        assert_eq!(SrtpProfile::from_iana_id(7), Some(AeadAes128Gcm));
        assert_eq!(SrtpProfile::from_iana_id(3), None);
    }

    #[test]
    fn rtp_and_rtcp_round_trip_for_every_profile() {
        for profile in SrtpProfile::PREFERENCE {
            let (mut ours, mut theirs) = pair(profile);
            for seq in [1u16, 2, 3] {
                let plain = rtp_packet(seq);
                let protected = theirs.encrypt_rtp(&plain).unwrap();
                assert_ne!(&protected[12..], &plain[12..], "{profile:?}");
                assert_eq!(&ours.decrypt_rtp(&protected).unwrap()[..], &plain[..]);
            }
            let plain = rtcp_packet();
            let protected = ours.encrypt_rtcp(&plain).unwrap();
            assert_eq!(&theirs.decrypt_rtcp(&protected).unwrap()[..], &plain[..]);
            // And the other direction.
            let protected = ours.encrypt_rtp(&rtp_packet(7)).unwrap();
            assert_eq!(
                &theirs.decrypt_rtp(&protected).unwrap()[..],
                &rtp_packet(7)[..]
            );
        }
    }

    #[test]
    fn tampered_packets_fail_authentication() {
        for profile in SrtpProfile::PREFERENCE {
            let (mut ours, mut theirs) = pair(profile);
            let mut protected = theirs.encrypt_rtp(&rtp_packet(1)).unwrap().to_vec();
            protected[20] ^= 1;
            assert!(ours.decrypt_rtp(&protected).is_err(), "{profile:?}");
            let mut protected = theirs.encrypt_rtcp(&rtcp_packet()).unwrap().to_vec();
            protected[12] ^= 1;
            assert!(ours.decrypt_rtcp(&protected).is_err(), "{profile:?}");
        }
    }

    #[test]
    fn replayed_packets_are_rejected_on_receive() {
        for profile in SrtpProfile::PREFERENCE {
            let (mut ours, mut theirs) = pair(profile);
            let protected = theirs.encrypt_rtp(&rtp_packet(10)).unwrap();
            ours.decrypt_rtp(&protected).unwrap();
            assert!(ours.decrypt_rtp(&protected).is_err(), "{profile:?}");
            let protected = theirs.encrypt_rtcp(&rtcp_packet()).unwrap();
            ours.decrypt_rtcp(&protected).unwrap();
            assert!(ours.decrypt_rtcp(&protected).is_err(), "{profile:?}");
        }
    }

    #[test]
    fn late_but_not_replayed_packets_are_accepted() {
        let (mut ours, mut theirs) = pair(SrtpProfile::Aes128CmHmacSha1_80);
        let first = theirs.encrypt_rtp(&rtp_packet(100)).unwrap();
        let second = theirs.encrypt_rtp(&rtp_packet(101)).unwrap();
        ours.decrypt_rtp(&second).unwrap();
        ours.decrypt_rtp(&first).unwrap();
    }

    #[test]
    fn unencrypted_srtcp_is_rejected() {
        let (mut ours, mut theirs) = pair(SrtpProfile::Aes128CmHmacSha1_80);
        let mut protected = theirs.encrypt_rtcp(&rtcp_packet()).unwrap().to_vec();
        let index_at = protected.len() - 10 - 4;
        protected[index_at] &= 0x7f;
        assert_eq!(ours.decrypt_rtcp(&protected), Err(SrtpError::Unencrypted));
    }

    #[test]
    fn truncated_or_garbage_packets_return_errors() {
        for profile in SrtpProfile::PREFERENCE {
            let (mut ours, mut theirs) = pair(profile);
            let rtp = theirs.encrypt_rtp(&rtp_packet(1)).unwrap();
            for len in 0..rtp.len() {
                assert!(ours.decrypt_rtp(&rtp[..len]).is_err(), "{profile:?} {len}");
            }
            let rtcp = theirs.encrypt_rtcp(&rtcp_packet()).unwrap();
            for len in 0..rtcp.len() {
                assert!(
                    ours.decrypt_rtcp(&rtcp[..len]).is_err(),
                    "{profile:?} {len}"
                );
            }
            for len in 0..12 {
                let _ = ours.encrypt_rtp(&rtp_packet(1)[..len]);
                let _ = ours.encrypt_rtcp(&rtcp_packet()[..len]);
            }
            let garbage = [0x80u8; 40];
            assert!(ours.decrypt_rtcp(&garbage).is_err());
            assert!(ours.decrypt_rtp(&garbage).is_err());
        }
    }
}
