//! The active speaker through real routers (room/speaker.rs): audio packets with the
//! `ssrc-audio-level` extension fed to the producers' receive path, the workers' ticks driven
//! with a chosen clock, the notifications as the signaling thread would send them. A child of
//! span_tests (its `Cluster`), so rooms on one worker and rooms spanning two are tested alike.

use super::*;
use crate::room::speaker::{SILENCE_TIMEOUT, WINDOW};
use std::time::Duration;

/// The opus fixture's SSRC and its `ssrc-audio-level` id.
const OPUS_SSRC: u32 = 1_842_937_120;
const LEVEL_ID: u8 = 1;
const TICK: Duration = Duration::from_millis(250);
/// Speech level (-dBov) and silence.
const LOUD: u8 = 20;
const SILENT: u8 = 127;

fn audio_packet(seq: u16, level: u8) -> Vec<u8> {
    let mut p = vec![0x90, 111];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 960).to_be_bytes());
    p.extend_from_slice(&OPUS_SSRC.to_be_bytes());
    p.extend_from_slice(&[0xbe, 0xde, 0, 1, (LEVEL_ID << 4), level, 0, 0]);
    p.extend_from_slice(&[0xfc, 0xff, 0xfe]);
    p
}

/// A test clock and the sequence numbers of each producer.
struct Talk {
    now: Instant,
    seq: u16,
}

impl Talk {
    fn new() -> Self {
        Self {
            now: Instant::now(),
            seq: 0,
        }
    }

    /// Producer `id` (published on worker `w`) sends `n` packets at `level`; a producer of a
    /// satellite reaches the home through the pipe, as media does.
    fn send(&mut self, c: &mut Cluster, w: usize, id: &str, level: u8, n: usize) {
        let key = c.pkey(w, id).expect("the producer");
        for _ in 0..n {
            self.seq = self.seq.wrapping_add(1);
            let pkt = audio_packet(self.seq, level);
            let hdr = crate::rtc::rtp::parse_rtp(&pkt).expect("rtp");
            let now = self.now;
            c.workers[w].core.in_router_of(key, |r, env| {
                r.on_producer_packet(env, key, 0, &pkt, &hdr, now)
            });
        }
        c.workers[w].core.flush_pipes();
        for worker in &mut c.workers {
            while let Some(batch) = worker.inbox.media.try_recv() {
                for i in 0..batch.len() {
                    if let Some((k, layer, packet, at)) = batch.get(i) {
                        worker.core.on_piped_packet(k, layer, packet, at);
                    }
                }
                worker.core.env.mesh.recycle(batch);
            }
        }
    }

    /// One tick of every worker, `TICK` after the last; then the mesh is pumped.
    fn tick(&mut self, c: &mut Cluster) {
        self.now += TICK;
        for worker in &mut c.workers {
            worker.core.tick(self.now, false);
        }
        c.collect();
        c.pump();
    }
}

/// The `active-speaker` notifications a client got (others are dropped): (worker, data).
fn speakers(c: &mut Cluster, client: &Client) -> Vec<(usize, Value)> {
    c.notes(client)
        .into_iter()
        .filter(|(_, m, _)| *m == "active-speaker")
        .map(|(w, _, v)| (w, v))
        .collect()
}

fn named(peer: &Client, producer: &str) -> Value {
    json!({"peerId": &*peer.peer, "producerId": producer})
}

/// A and B on worker 0, each publishing audio; C on worker 0 only listening.
fn room_of_three() -> (Cluster, [Client; 3], String, String) {
    let mut c = Cluster::new(1);
    let (a, _) = c.join(0, "a", 0);
    let (b, _) = c.join(0, "b", 0);
    let (l, _) = c.join(0, "c", 0);
    let ta = c.transport(&a, Direction::Send);
    let pa = c.produce(&a, &ta, Kind::Audio);
    let tb = c.transport(&b, Direction::Send);
    let pb = c.produce(&b, &tb, Kind::Audio);
    for x in [&a, &b, &l] {
        c.notes(x);
    }
    (c, [a, b, l], pa, pb)
}

#[test]
fn the_peer_that_speaks_is_announced_to_everyone_and_a_muted_one_never() {
    let (mut c, [a, b, l], pa, pb) = room_of_three();
    let mut t = Talk::new();
    for _ in 0..8 {
        t.send(&mut c, 0, &pa, LOUD, 12);
        t.send(&mut c, 0, &pb, SILENT, 12);
        t.tick(&mut c);
    }
    for x in [&a, &b, &l] {
        assert_eq!(
            speakers(&mut c, x),
            vec![(0, named(&a, &pa))],
            "{} hears of A once",
            x.peer
        );
    }
}

#[test]
fn nobody_speaking_for_two_seconds_is_announced_as_null() {
    let (mut c, [a, b, _l], pa, pb) = room_of_three();
    let mut t = Talk::new();
    let spoke = t.now;
    t.send(&mut c, 0, &pa, LOUD, 5);
    t.tick(&mut c);
    assert_eq!(speakers(&mut c, &b), vec![(0, named(&a, &pa))]);
    assert_eq!(speakers(&mut c, &a), vec![(0, named(&a, &pa))]);
    // Silence (packets still flowing, as from a disabled track) until just before 2 s...
    while t.now + TICK < spoke + SILENCE_TIMEOUT {
        t.send(&mut c, 0, &pa, SILENT, 12);
        t.send(&mut c, 0, &pb, SILENT, 12);
        t.tick(&mut c);
    }
    assert!(speakers(&mut c, &b).is_empty(), "A is still the speaker");
    // ... then nobody.
    t.send(&mut c, 0, &pa, SILENT, 12);
    t.tick(&mut c);
    assert_eq!(speakers(&mut c, &b), vec![(0, json!({"peerId": null}))]);
    assert_eq!(speakers(&mut c, &a), vec![(0, json!({"peerId": null}))]);
    for _ in 0..4 {
        t.tick(&mut c);
    }
    assert!(speakers(&mut c, &b).is_empty(), "told once");
}

#[test]
fn a_louder_challenger_takes_over_only_after_two_intervals_in_a_row() {
    let (mut c, [a, b, l], pa, pb) = room_of_three();
    let mut t = Talk::new();
    t.send(&mut c, 0, &pa, LOUD, 2);
    t.tick(&mut c);
    assert_eq!(speakers(&mut c, &l), vec![(0, named(&a, &pa))]);
    assert_eq!(speakers(&mut c, &a), vec![(0, named(&a, &pa))]);
    // B talks over A for one interval: its window outscores A's once, and then A catches up
    // (talking more than B for the rest of the window).
    t.send(&mut c, 0, &pb, LOUD, 10);
    t.tick(&mut c);
    t.send(&mut c, 0, &pa, LOUD, 12);
    t.tick(&mut c);
    assert!(
        speakers(&mut c, &l).is_empty(),
        "one interval is not enough"
    );
    // B keeps talking more than A: after two intervals ahead, it is the speaker.
    for _ in 0..WINDOW {
        t.send(&mut c, 0, &pb, LOUD, 12);
        t.send(&mut c, 0, &pa, LOUD, 1);
        t.tick(&mut c);
    }
    assert_eq!(speakers(&mut c, &l), vec![(0, named(&b, &pb))]);
    assert_eq!(speakers(&mut c, &a), vec![(0, named(&b, &pb))]);
}

#[test]
fn a_paused_producer_is_never_the_speaker_and_stops_being_it_at_once() {
    let (mut c, [a, b, l], pa, pb) = room_of_three();
    c.ok(
        &b,
        Request::PauseProducer {
            producer_id: pb.clone(),
        },
    );
    c.notes(&l);
    let mut t = Talk::new();
    for _ in 0..4 {
        // Whatever still arrives of a paused producer counts for nothing.
        t.send(&mut c, 0, &pb, LOUD, 12);
        t.tick(&mut c);
    }
    assert!(speakers(&mut c, &l).is_empty(), "paused: never the speaker");
    t.send(&mut c, 0, &pa, LOUD, 3);
    t.tick(&mut c);
    assert_eq!(speakers(&mut c, &l), vec![(0, named(&a, &pa))]);
    c.ok(
        &a,
        Request::PauseProducer {
            producer_id: pa.clone(),
        },
    );
    t.tick(&mut c);
    assert_eq!(speakers(&mut c, &l), vec![(0, json!({"peerId": null}))]);
}

#[test]
fn a_closed_speaker_gives_way_to_the_next_one_at_once() {
    let (mut c, [a, b, l], pa, pb) = room_of_three();
    let mut t = Talk::new();
    t.send(&mut c, 0, &pa, LOUD, 12);
    t.send(&mut c, 0, &pb, LOUD, 2);
    t.tick(&mut c);
    assert_eq!(speakers(&mut c, &l), vec![(0, named(&a, &pa))]);
    c.ok(
        &a,
        Request::CloseProducer {
            producer_id: pa.clone(),
        },
    );
    t.tick(&mut c);
    assert_eq!(speakers(&mut c, &l), vec![(0, named(&b, &pb))]);
}

#[test]
fn a_peer_joining_later_is_told_who_speaks_after_its_join_answer() {
    let (mut c, [a, _b, _l], pa, _pb) = room_of_three();
    let mut t = Talk::new();
    t.send(&mut c, 0, &pa, LOUD, 3);
    t.tick(&mut c);
    let (d, _) = c.join(0, "d", 0);
    assert_eq!(speakers(&mut c, &d), vec![(0, named(&a, &pa))]);
}

/// The room homed on worker 0 with listener A there; B on worker 1 publishes audio, C on
/// worker 1 publishes audio and stays silent.
#[test]
fn in_a_spanning_room_the_home_decides_and_every_worker_tells_its_peers() {
    let mut c = Cluster::new(2);
    let (a, _) = c.join(0, "a", 0);
    let (b, _) = c.join(0, "b", 1);
    let (cc, _) = c.join(0, "c", 1);
    let tb = c.transport(&b, Direction::Send);
    let pb = c.produce(&b, &tb, Kind::Audio);
    let tc = c.transport(&cc, Direction::Send);
    let pc = c.produce(&cc, &tc, Kind::Audio);
    assert!(
        c.pkey(0, &pb).is_some(),
        "the home has a piped copy of B's producer"
    );
    for x in [&a, &b, &cc] {
        c.notes(x);
    }
    let mut t = Talk::new();
    for _ in 0..4 {
        t.send(&mut c, 1, &pb, LOUD, 12);
        t.send(&mut c, 1, &pc, SILENT, 12);
        t.tick(&mut c);
    }
    assert!(
        c.workers[0].stats.pipe_packets_in.load(Ordering::Relaxed) >= 96,
        "the audio reached the home through the pipe"
    );
    assert_eq!(speakers(&mut c, &a), vec![(0, named(&b, &pb))]);
    assert_eq!(speakers(&mut c, &b), vec![(1, named(&b, &pb))]);
    assert_eq!(speakers(&mut c, &cc), vec![(1, named(&b, &pb))]);

    // Later joiners, on the home and on the satellite, hear of B after their join.
    let (d, _) = c.join(0, "d", 0);
    let (e, _) = c.join(0, "e", 1);
    assert_eq!(speakers(&mut c, &d), vec![(0, named(&b, &pb))]);
    assert_eq!(speakers(&mut c, &e), vec![(1, named(&b, &pb))]);

    // Silence everywhere: null, once, on both workers.
    for _ in 0..(SILENCE_TIMEOUT.as_millis() / TICK.as_millis()) + 1 {
        t.send(&mut c, 1, &pb, SILENT, 12);
        t.tick(&mut c);
    }
    for x in [&a, &d] {
        assert_eq!(speakers(&mut c, x), vec![(0, json!({"peerId": null}))]);
    }
    for x in [&b, &cc, &e] {
        assert_eq!(speakers(&mut c, x), vec![(1, json!({"peerId": null}))]);
    }
}

/// A satellite whose replica is new (its first peer joins after B started speaking) learns the
/// current speaker from the home with its snapshot.
#[test]
fn a_new_satellite_learns_the_current_speaker_before_its_first_peer_joins() {
    let mut c = Cluster::new(2);
    let (a, _) = c.join(0, "a", 0);
    let ta = c.transport(&a, Direction::Send);
    let pa = c.produce(&a, &ta, Kind::Audio);
    let mut t = Talk::new();
    t.send(&mut c, 0, &pa, LOUD, 3);
    t.tick(&mut c);
    assert_eq!(speakers(&mut c, &a), vec![(0, named(&a, &pa))]);
    let (b, _) = c.join(0, "b", 1);
    assert_eq!(speakers(&mut c, &b), vec![(1, named(&a, &pa))]);
}
