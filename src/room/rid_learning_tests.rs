//! Simulcast rid learning on the receive path (`learn_rid_ssrc`), through `handle_rtp` with real
//! SRTP: SSRCs are bound by rid and repaired rid, and an SSRC that matches nothing is memoized
//! instead of being looked up for every packet.

use crate::channel::task_mailbox;
use crate::room::api::{Command, Job, JobKind, TransportDirection};
use crate::room::core::WorkerCore;
use crate::room::env::Env;
use crate::room::ortc::{MediaKind, RtpParameters};
use crate::room::router::Router;
use crate::rtc::dtls::{DtlsCertificate, DtlsRuntime};
use crate::rtc::srtp::{split_keying_material, SrtpProfile, SrtpSession};
use crate::stats::WorkerStats;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ROOM: &str = "rid-room";
const SIMULCAST: &str = include_str!("ortc/fixtures/produce_vp8_simulcast.json");
/// The fixture's rtp-stream-id and repaired-rtp-stream-id extension ids.
const RID_ID: u8 = 10;
const RRID_ID: u8 = 11;

struct Setup {
    core: WorkerCore,
    tkey: super::TKey,
    browser: SrtpSession,
    seq: u16,
    _runtime: Arc<DtlsRuntime>,
}

fn setup() -> Setup {
    let cert = Arc::new(DtlsCertificate::generate().expect("certificate"));
    let fingerprint = cert.fingerprint_sha256();
    let runtime = Arc::new(DtlsRuntime::start(cert).expect("dtls runtime"));
    let (dtls_tx, _dtls_rx) = task_mailbox();
    let (sig_tx, _sig_rx) = task_mailbox();
    let mut core = WorkerCore::new(Env::new(
        0,
        "127.0.0.1:40000".parse().unwrap(),
        runtime.clone(),
        fingerprint,
        dtls_tx,
        sig_tx,
        Arc::new(WorkerStats::new(0, None)),
    ));
    let now = Instant::now();
    let job = |kind| Job {
        conn: 1,
        room_id: Arc::from(ROOM),
        peer_id: Arc::from("peer-1"),
        kind,
    };
    core.handle_job(
        job(JobKind::Join {
            req_id: 1,
            display_name: "p".into(),
            host: 0,
        }),
        now,
    );
    let request = |req_id, command| JobKind::Request { req_id, command };
    core.handle_job(
        job(request(
            2,
            Command::CreateTransport {
                direction: TransportDirection::Send,
                sctp: false,
            },
        )),
        now,
    );
    let (&tkey, t) = core.routers[ROOM]
        .transports
        .iter()
        .next()
        .expect("a transport");
    let transport_id = t.id.clone();
    let params: RtpParameters = serde_json::from_str(SIMULCAST).unwrap();
    core.handle_job(
        job(request(
            3,
            Command::Produce {
                transport_id,
                kind: MediaKind::Video,
                rtp_parameters: params,
                label: crate::room::api::SourceLabel::Camera,
            },
        )),
        now,
    );
    assert_eq!(
        core.routers[ROOM].producers.len(),
        1,
        "the simulcast producer exists"
    );
    let profile = SrtpProfile::AeadAes128Gcm;
    let material: Vec<u8> = (0..2 * (profile.key_len() + profile.salt_len()))
        .map(|i| i as u8)
        .collect();
    let ours = split_keying_material(profile, &material, false).unwrap();
    let theirs = split_keying_material(profile, &material, true).unwrap();
    let room = core.routers.get_mut(ROOM).unwrap();
    let t = room.transports.get_mut(&tkey).unwrap();
    t.srtp = Some(SrtpSession::new(&ours).unwrap());
    Setup {
        core,
        tkey,
        browser: SrtpSession::new(&theirs).unwrap(),
        seq: 100,
        _runtime: runtime,
    }
}

impl Setup {
    /// Sends one SRTP packet of `ssrc` with the extension (`id`, `value`), if any.
    fn send(&mut self, ssrc: u32, ext: Option<(u8, &[u8])>, now: Instant) {
        self.seq += 1;
        let mut p = vec![0x80, 96];
        p.extend_from_slice(&self.seq.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 1]);
        p.extend_from_slice(&ssrc.to_be_bytes());
        if let Some((id, value)) = ext {
            p[0] |= 0x10;
            let mut block = vec![(id << 4) | (value.len() as u8 - 1)];
            block.extend_from_slice(value);
            block.resize(block.len().div_ceil(4) * 4, 0);
            p.extend_from_slice(&[0xbe, 0xde]);
            p.extend_from_slice(&((block.len() / 4) as u16).to_be_bytes());
            p.extend_from_slice(&block);
        }
        p.extend_from_slice(&[0x10, 0, 0, 0, 0, 0]);
        let protected = self.browser.encrypt_rtp(&p).unwrap();
        let core = &mut self.core;
        let room = core.routers.get_mut(ROOM).unwrap();
        room.handle_rtp(&mut core.env, self.tkey, &protected, now);
    }

    fn room(&self) -> &Router {
        &self.core.routers[ROOM]
    }

    fn learned(&self, ssrc: u32) -> bool {
        self.room().transports[&self.tkey]
            .producers_by_ssrc
            .contains_key(&ssrc)
    }

    fn producer(&self) -> &crate::room::producer::Producer {
        self.room().producers.values().next().unwrap()
    }
}

#[test]
fn simulcast_ssrcs_are_learned_from_their_rid_and_repaired_rid() {
    let mut s = setup();
    let now = Instant::now();
    s.send(0x1111, Some((RID_ID, b"r1")), now);
    s.send(0x2222, Some((RRID_ID, b"r1")), now);
    s.send(0x3333, Some((RID_ID, b"r0")), now);
    assert!(s.learned(0x1111) && s.learned(0x2222) && s.learned(0x3333));
    let p = s.producer();
    assert_eq!(p.ssrcs[..2], [Some(0x3333), Some(0x1111)]);
    assert_eq!(p.quality.layers[1].rtx_ssrc, Some(0x2222));
}

#[test]
fn an_ssrc_that_matches_no_rid_is_not_looked_up_again_until_the_memo_expires() {
    let mut s = setup();
    let start = Instant::now();
    // No extensions at all: nothing to learn, nothing remembered.
    s.send(0x4444, None, start);
    assert!(!s.learned(0x4444));
    let misses = &s.room().transports[&s.tkey].route_misses;
    assert_eq!(misses.get(0x4444), None);
    // An unknown rid: a miss, remembered.
    s.send(0x4444, Some((RID_ID, b"zz")), start);
    let misses = &s.room().transports[&s.tkey].route_misses;
    assert!(misses.get(0x4444).is_some());
    // Within the memo's lifetime even a matching rid is not looked at...
    s.send(
        0x4444,
        Some((RID_ID, b"r2")),
        start + Duration::from_millis(50),
    );
    assert!(!s.learned(0x4444), "memoized miss");
    // ...after it, the SSRC is learned and the memo is gone.
    s.send(
        0x4444,
        Some((RID_ID, b"r2")),
        start + Duration::from_millis(150),
    );
    assert!(s.learned(0x4444));
    assert_eq!(s.producer().ssrcs[2], Some(0x4444));
    let misses = &s.room().transports[&s.tkey].route_misses;
    assert_eq!(misses.get(0x4444), None);
}

#[test]
fn junk_ssrcs_stay_within_the_sessions_budget() {
    let mut s = setup();
    let now = Instant::now();
    for ssrc in 0..500u32 {
        s.send(0x10_0000 + ssrc, Some((RID_ID, b"nope")), now);
    }
    let srtp = s.room().transports[&s.tkey].srtp.as_ref().unwrap();
    let (rtp, _) = srtp.receive_ssrcs();
    assert_eq!(rtp, crate::rtc::srtp::MAX_RECEIVE_SSRCS);
    assert_eq!(
        srtp.refused_ssrc_packets(),
        500 - crate::rtc::srtp::MAX_RECEIVE_SSRCS as u64
    );
    assert!(s.room().transports[&s.tkey].producers_by_ssrc.is_empty());
}
