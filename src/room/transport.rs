//! A WebRTC transport: ICE-lite credentials and the selected tuple, the DTLS session that
//! yields SRTP keys, the SRTP contexts and the transport-wide congestion-control feedback.
//! Owned by its room's router, on behalf of one peer; its producers and consumers are
//! indexed here by SSRC but owned by the router.

use super::adapt::SendBwe;
use super::api::TransportDirection;
use super::limits::SharedBucket;
use super::remote::Remote;
use super::{CKey, PKey, TKey};
use crate::rtc::dtls::{DtlsEvent, DtlsRole, DtlsSession, RemoteFingerprint};
use crate::rtc::ice::IceCredentials;
use crate::rtc::srtp::SrtpSession;
use crate::rtc::srtp_unprotect::MAX_RECEIVE_SSRCS;
use crate::rtc::twcc::TwccRecorder;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// A DTLS event tagged with the transport it belongs to (from the DTLS thread).
pub struct DtlsMsg {
    pub room: Arc<str>,
    pub transport: TKey,
    pub event: DtlsEvent,
}

/// Transport-wide congestion control feedback state of one transport that receives media.
pub struct TransportFeedback {
    /// The transport-wide-cc extension id (taken from the first producer that has it).
    pub ext_id: u8,
    pub recorder: TwccRecorder,
}

/// DTLS records that may arrive before `connect-transport`; kept until it comes.
pub const MAX_EARLY_DTLS: usize = 8;

pub enum DtlsState {
    /// No `connect-transport` yet.
    New,
    /// Connect called; the handshake starts once a role and (for the client role) a tuple exist.
    Pending {
        role: DtlsRole,
        remote: Vec<RemoteFingerprint>,
    },
    Handshaking(DtlsSession),
    Connected(DtlsSession),
    Failed,
}

pub struct Transport {
    pub key: TKey,
    pub id: String,
    pub peer: Arc<str>,
    pub direction: TransportDirection,
    pub ice: IceCredentials,
    /// The tuple media goes to: the browser's nomination before media flows, then only a
    /// tuple that proved consent with authenticated SRTP (room/consent.rs).
    pub remote: Option<Remote>,
    /// Other tuples that passed a binding request, and when (bounded; room/consent.rs).
    pub candidates: Vec<(Remote, Instant)>,
    pub dtls: DtlsState,
    pub early_dtls: Vec<Vec<u8>>,
    pub srtp: Option<SrtpSession>,
    pub producers_by_ssrc: HashMap<u32, PKey>,
    pub consumers_by_ssrc: HashMap<u32, CKey>,
    pub next_mid: u32,
    pub last_seen: Instant,
    /// The bit-rate cap of the peer owning the transport (shared by its transports).
    pub egress: SharedBucket,
    /// Received SSRCs that routed to no producer (see `packet::learn_rid_ssrc`).
    pub route_misses: RouteMisses,
    pub feedback: Option<TransportFeedback>,
    /// The send side's bandwidth estimation (recv transports only: room/adapt.rs).
    pub bwe: Option<Box<SendBwe>>,
    /// Created with `sctp: true`: runs SCTP for data channels (src/room/data.rs).
    pub sctp: bool,
}

/// What the packet path last concluded about a received SSRC that routes to no producer, so
/// it is not looked up again for every packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteMiss {
    /// A value that changes when a lookup could find something new (the worker's producer
    /// count; a change it misses is caught by the memo's expiry).
    pub generation: usize,
    pub at: Instant,
}

/// The memo of routing misses of one transport. Only SSRCs that authenticated reach it, and
/// it holds at most as many as the SRTP session keeps receive state for.
#[derive(Debug, Default)]
pub struct RouteMisses(HashMap<u32, RouteMiss>);

impl RouteMisses {
    pub fn get(&self, ssrc: u32) -> Option<RouteMiss> {
        self.0.get(&ssrc).copied()
    }

    /// Records (or, `None`, forgets) a miss; a new SSRC beyond the bound is not recorded.
    pub fn set(&mut self, ssrc: u32, miss: Option<RouteMiss>) {
        match miss {
            None => {
                self.0.remove(&ssrc);
            }
            Some(m) if self.0.len() < MAX_RECEIVE_SSRCS || self.0.contains_key(&ssrc) => {
                self.0.insert(ssrc, m);
            }
            Some(_) => {}
        }
    }
}

impl Transport {
    pub fn new(
        key: TKey,
        peer: Arc<str>,
        direction: TransportDirection,
        egress: SharedBucket,
        now: Instant,
    ) -> Self {
        Self {
            key,
            id: crate::ids::uuid_v4(),
            peer,
            direction,
            ice: IceCredentials::random(),
            remote: None,
            candidates: Vec::new(),
            dtls: DtlsState::New,
            early_dtls: Vec::new(),
            srtp: None,
            producers_by_ssrc: HashMap::new(),
            consumers_by_ssrc: HashMap::new(),
            next_mid: 0,
            last_seen: now,
            egress,
            route_misses: RouteMisses::default(),
            feedback: None,
            bwe: (direction == TransportDirection::Recv).then(|| Box::new(SendBwe::new(now))),
            sctp: false,
        }
    }

    pub fn is_connected(&self) -> bool {
        self.srtp.is_some() && self.remote.is_some()
    }

    pub fn take_mid(&mut self) -> String {
        let mid = self.next_mid.to_string();
        self.next_mid += 1;
        mid
    }

    /// Closes the DTLS session (idempotent).
    pub fn close(&mut self) {
        if let DtlsState::Handshaking(s) | DtlsState::Connected(s) = &self.dtls {
            s.close();
        }
        self.dtls = DtlsState::Failed;
        self.srtp = None;
    }
}
