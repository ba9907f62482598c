//! SRTP/SRTCP session keys (RFC 3711 §4.3, RFC 7714 §11) and the ciphers built from them,
//! shared by our in-place protect ([`super::srtp_inplace`]) and unprotect
//! ([`super::srtp_unprotect`], [`super::srtcp_unprotect`]), so both directions derive keys the
//! same way.
//!
//! Key derivation rate 0 (DTLS-SRTP), so each session key is derived once per session.

use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockEncrypt, InnerIvInit, KeyInit, StreamCipher};
use aes::{Aes128, Aes128Enc, Aes256};
use aes_gcm::{Aes128Gcm, Aes256Gcm};
use hmac::Hmac;
use sha1::Sha1;

use super::srtp::{SrtpError, SrtpProfile};

/// HMAC-SHA1 session authentication key length (RFC 3711 §8.2, n_a = 160 bits).
const AUTH_KEY_LEN: usize = 20;
/// The AEAD profiles' tag (RFC 7714 §14.2).
pub(super) const GCM_TAG_LEN: usize = 16;
/// SRTCP's HMAC-SHA1 tag is 80 bits for both AES-CM profiles (RFC 5764 §4.1.2).
const SRTCP_HMAC_TAG_LEN: usize = 10;

/// CTR over a borrowed, already-expanded AES key: no key schedule or copy per packet.
pub(super) type Aes128CtrRef<'a> = ctr::Ctr128BE<&'a Aes128Enc>;
pub(super) type HmacSha1 = Hmac<Sha1>;

/// Which half of the key hierarchy: the labels of RFC 3711 §4.3.2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stream {
    Srtp,
    Srtcp,
}

impl Stream {
    /// (encryption, authentication, salt) labels.
    fn labels(self) -> (u8, u8, u8) {
        match self {
            Stream::Srtp => (0x00, 0x01, 0x02),
            Stream::Srtcp => (0x03, 0x04, 0x05),
        }
    }
}

pub(super) enum Transform {
    Gcm128(Box<Aes128Gcm>),
    Gcm256(Box<Aes256Gcm>),
    AesCmHmacSha1 {
        aes: Box<Aes128Enc>,
        hmac: Box<HmacSha1>,
        tag_len: usize,
    },
}

impl Transform {
    /// Bytes of auth tag per packet.
    pub(super) fn tag_len(&self) -> usize {
        match self {
            Transform::Gcm128(_) | Transform::Gcm256(_) => GCM_TAG_LEN,
            Transform::AesCmHmacSha1 { tag_len, .. } => *tag_len,
        }
    }
}

/// The session cipher and salt of one direction of one stream kind (SRTP or SRTCP).
pub(super) struct SessionKeys {
    pub(super) transform: Transform,
    /// The session salt, left-aligned: 14 bytes for AES-CM, the first 12 for GCM.
    pub(super) salt: [u8; 14],
}

impl SessionKeys {
    pub(super) fn derive(
        profile: SrtpProfile,
        master_key: &[u8],
        master_salt: &[u8],
        stream: Stream,
    ) -> Result<Self, SrtpError> {
        if master_key.len() != profile.key_len() || master_salt.len() != profile.salt_len() {
            return Err(SrtpError::Crypto(format!(
                "{profile:?} master key/salt of {}/{} bytes",
                master_key.len(),
                master_salt.len()
            )));
        }
        let (label_key, label_auth, label_salt) = stream.labels();
        let prf = Prf::new(master_key)?;
        let mut session_key = [0u8; 32];
        let session_key = &mut session_key[..master_key.len()];
        prf.derive(master_salt, label_key, session_key);
        let mut salt = [0u8; 14];
        prf.derive(master_salt, label_salt, &mut salt[..master_salt.len()]);
        let bad_key = |e: aes::cipher::InvalidLength| SrtpError::Crypto(e.to_string());
        let transform = match profile {
            SrtpProfile::AeadAes128Gcm => Transform::Gcm128(Box::new(
                Aes128Gcm::new_from_slice(session_key).map_err(bad_key)?,
            )),
            SrtpProfile::AeadAes256Gcm => Transform::Gcm256(Box::new(
                Aes256Gcm::new_from_slice(session_key).map_err(bad_key)?,
            )),
            SrtpProfile::Aes128CmHmacSha1_80 | SrtpProfile::Aes128CmHmacSha1_32 => {
                let mut auth_key = [0u8; AUTH_KEY_LEN];
                prf.derive(master_salt, label_auth, &mut auth_key);
                let tag_len = match (stream, profile) {
                    (Stream::Srtcp, _) => SRTCP_HMAC_TAG_LEN,
                    (Stream::Srtp, SrtpProfile::Aes128CmHmacSha1_80) => 10,
                    (Stream::Srtp, _) => 4,
                };
                let hmac = <HmacSha1 as hmac::Mac>::new_from_slice(&auth_key)
                    .map_err(|e| SrtpError::Crypto(e.to_string()))?;
                auth_key.fill(0);
                Transform::AesCmHmacSha1 {
                    aes: Box::new(Aes128Enc::new_from_slice(session_key).map_err(bad_key)?),
                    hmac: Box::new(hmac),
                    tag_len,
                }
            }
        };
        session_key.fill(0);
        Ok(Self { transform, salt })
    }
}

/// AES-CM keystream applied to `data` for the packet (SSRC, index) (RFC 3711 §4.1.1):
/// IV = (k_s * 2^16) XOR (SSRC * 2^64) XOR (i * 2^16). SRTCP uses its 31-bit index as i.
pub(super) fn aes_cm_apply(
    aes: &Aes128Enc,
    salt: &[u8; 14],
    ssrc: u32,
    index: u64,
    data: &mut [u8],
) {
    let mut iv = [0u8; 16];
    iv[..14].copy_from_slice(salt);
    xor(&mut iv[4..8], &ssrc.to_be_bytes());
    xor(&mut iv[8..14], &index.to_be_bytes()[2..]);
    let mut keystream = Aes128CtrRef::from_core(ctr::CtrCore::inner_iv_init(
        aes,
        GenericArray::from_slice(&iv),
    ));
    keystream.apply_keystream(data);
}

/// RFC 7714 §8.1 (SRTP) nonce: salt XOR (0^16 || SSRC || ROC || SEQ).
pub(super) fn gcm_rtp_nonce(salt: &[u8; 14], ssrc: u32, roc: u32, seq: u16) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv.copy_from_slice(&salt[..12]);
    xor(&mut iv[2..6], &ssrc.to_be_bytes());
    xor(&mut iv[6..10], &roc.to_be_bytes());
    xor(&mut iv[10..12], &seq.to_be_bytes());
    iv
}

/// RFC 7714 §9.1 (SRTCP) nonce: salt XOR (0^16 || SSRC || 0^16 || 0 || SRTCP index).
pub(super) fn gcm_rtcp_nonce(salt: &[u8; 14], ssrc: u32, index: u32) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv.copy_from_slice(&salt[..12]);
    xor(&mut iv[2..6], &ssrc.to_be_bytes());
    xor(&mut iv[8..12], &index.to_be_bytes());
    iv
}

pub(super) fn xor(dst: &mut [u8], src: &[u8]) {
    dst.iter_mut().zip(src).for_each(|(d, s)| *d ^= s);
}

/// The RFC 3711 §4.3.3 AES-CM PRF keyed with the master key.
#[allow(clippy::large_enum_variant)] // lives on the stack while a session is set up
pub(super) enum Prf {
    Aes128(Aes128),
    Aes256(Aes256),
}

impl Prf {
    pub(super) fn new(master_key: &[u8]) -> Result<Self, SrtpError> {
        let bad_key = || SrtpError::Crypto(format!("master key of {} bytes", master_key.len()));
        match master_key.len() {
            16 => Aes128::new_from_slice(master_key).map(Prf::Aes128),
            32 => Aes256::new_from_slice(master_key).map(Prf::Aes256),
            _ => return Err(bad_key()),
        }
        .map_err(|_| bad_key())
    }

    /// Fills `out` with the session key for `label`: AES(master key, (label XOR salt) || i)
    /// for i = 0, 1, ..., with "index DIV kdr" = 0.
    pub(super) fn derive(&self, master_salt: &[u8], label: u8, out: &mut [u8]) {
        for (i, chunk) in out.chunks_mut(16).enumerate() {
            let mut block = [0u8; 16];
            block[..master_salt.len()].copy_from_slice(master_salt);
            block[7] ^= label;
            block[14..].copy_from_slice(&(i as u16).to_be_bytes());
            let block_ref = GenericArray::from_mut_slice(&mut block);
            match self {
                Prf::Aes128(c) => c.encrypt_block(block_ref),
                Prf::Aes256(c) => c.encrypt_block(block_ref),
            }
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
    }
}

/// Length of the RTP header (fixed part, CSRCs, extension block): what SRTP leaves in clear.
/// Only lengths are read here; the header's content is checked after authentication.
pub(super) fn rtp_header_len(packet: &[u8]) -> Option<usize> {
    const FIXED_HEADER_LEN: usize = 12;
    if packet.len() < FIXED_HEADER_LEN || packet[0] >> 6 != 2 {
        return None;
    }
    let mut len = FIXED_HEADER_LEN + 4 * (packet[0] & 0x0f) as usize;
    if packet[0] & 0x10 != 0 {
        let words = u16::from_be_bytes([*packet.get(len + 2)?, *packet.get(len + 3)?]);
        len += 4 + 4 * words as usize;
    }
    (len <= packet.len()).then_some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kdf_matches_the_rfc_3711_appendix_b3_test_vectors() {
        let master_key = hex::decode("E1F97A0D3E018BE0D64FA32C06DE4139").unwrap();
        let master_salt = hex::decode("0EC675AD498AFEEBB6960B3AABE6").unwrap();
        let prf = Prf::new(&master_key).unwrap();
        let mut key = [0u8; 16];
        prf.derive(&master_salt, 0x00, &mut key);
        assert_eq!(hex::encode_upper(key), "C61E7A93744F39EE10734AFE3FF7A087");
        let mut salt = [0u8; 14];
        prf.derive(&master_salt, 0x02, &mut salt);
        assert_eq!(hex::encode_upper(salt), "30CBBC08863D8C85D49DB34A9AE1");
        let mut auth = [0u8; 20];
        prf.derive(&master_salt, 0x01, &mut auth);
        assert_eq!(
            hex::encode_upper(auth),
            "CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4"
        );
    }

    #[test]
    fn header_length_covers_csrcs_and_the_extension_block_and_never_the_buffer_end() {
        let mut p = vec![
            0x92, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 9, 0, 0, 0, 8,
        ];
        p.extend_from_slice(&[0xBE, 0xDE, 0, 1, 0x10, 1, 0, 0, 0xaa]);
        assert_eq!(rtp_header_len(&p), Some(28));
        for len in 0..28 {
            assert_eq!(rtp_header_len(&p[..len]), None, "{len}");
        }
        p[0] = 0x40;
        assert_eq!(rtp_header_len(&p), None);
    }
}
