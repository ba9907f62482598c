//! Sans-IO protocol pieces: fed bytes and time, they return bytes and events.
//!
//! One exception: `dtls` owns a thread (a tokio current-thread runtime running webrtc-dtls's
//! handshakes), which workers talk to over mailboxes; everything else here is plain structs.

pub mod bwe;
pub mod dtls;
pub mod dtls_gate;
pub mod framing;
pub mod ice;
pub mod keyframe;
pub mod nack;
pub mod rtcp;
pub mod rtp;
pub mod sctp;
pub mod srtcp_unprotect;
pub mod srtp;
pub mod srtp_inplace;
pub mod srtp_kdf;
pub mod srtp_replay;
pub mod srtp_unprotect;
pub mod twcc;
pub mod vp8;

/// What a datagram arriving on the shared media socket is (RFC 7983 demultiplexing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketClass {
    Stun,
    Dtls,
    Rtp,
    Rtcp,
    Unknown,
}

/// Classifies a datagram by its first bytes (RFC 7983, RFC 5761 for RTP vs RTCP).
pub fn classify(buf: &[u8]) -> PacketClass {
    match buf.first() {
        Some(0..=3) if buf.len() >= 20 => PacketClass::Stun,
        Some(20..=63) if buf.len() >= 13 => PacketClass::Dtls,
        Some(128..=191) if buf.len() >= 12 => {
            // RTCP packet types 192..=223 sit where RTP's marker bit + payload type would be.
            match buf[1] {
                192..=223 => PacketClass::Rtcp,
                _ => PacketClass::Rtp,
            }
        }
        _ => PacketClass::Unknown,
    }
}
