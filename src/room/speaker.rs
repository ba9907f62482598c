//! The room's active (dominant) speaker, from the RFC 6464 `ssrc-audio-level` header extension
//! of its audio producers (shared/protocol.md `active-speaker`).
//!
//! - *Measure* ([`LevelMeter`], one per audio producer, on the receive path without
//!   allocating): a packet whose level is below [`SPEECH_MAX_LEVEL`] -dBov (i.e. louder than
//!   -50 dBov) counts as speech. The voice-activity bit is not used: Chromium's VAD does not set
//!   it for every sound (its fake microphone's beeps), the level is what every sender fills in.
//!   A track with `enabled = false` sends silence (level 127), a paused producer sends nothing.
//! - *Score*: every evaluation closes an interval; a producer's score is its speech packets
//!   over the last [`WINDOW`] intervals (≈1.5 s: Chromium's fake microphone beeps for 20 ms
//!   every 500 ms, so a shorter window would see a beeping talker as silent half the time).
//! - *Decide* ([`ActiveSpeaker::decide`], a pure unit): every router tick (250 ms, at most every
//!   [`MIN_EVAL_INTERVAL`]) on the room's home worker only. A producer that is paused, or has
//!   not spoken for [`SILENCE_TIMEOUT`], is never dominant. With nobody dominant, the best
//!   scoring speaker becomes dominant at once; a dominant speaker is replaced only by one that
//!   scores strictly higher on [`CHALLENGE_INTERVALS`] consecutive evaluations (no flapping
//!   between two talkers), or at once when it paused, closed or fell silent. Nobody left →
//!   `{peerId: null}`.
//! - *Spanning rooms*: the home sees every producer of the room, local or piped in (every
//!   replica, the home's included, subscribes to every producer of the other workers), so it
//!   decides alone; satellites only relay the decision to their peers (`PipeMsg::ActiveSpeaker`,
//!   home → satellites), and a peer joining later is told the current speaker after its join.

use super::api::{ConnId, Notice};
use super::env::Env;
use super::mesh::{PipeMsg, RoomTag};
use super::ortc::{self, MediaKind, ProducerMapping};
use super::router::Router;
use super::PKey;
use crate::rtc::rtp;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A packet with a level (-dBov) below this is speech.
pub const SPEECH_MAX_LEVEL: u8 = 50;
/// Intervals a producer's score spans.
pub const WINDOW: usize = 6;
/// Evaluations closer together than this are skipped (the router tick is 250 ms).
pub const MIN_EVAL_INTERVAL: Duration = Duration::from_millis(200);
/// A producer silent for this long is not dominant any more.
pub const SILENCE_TIMEOUT: Duration = Duration::from_secs(2);
/// Consecutive evaluations a challenger must outscore the dominant speaker to replace it.
pub const CHALLENGE_INTERVALS: u8 = 2;

/// Speech of one audio producer, per interval.
#[derive(Debug, Clone)]
pub struct LevelMeter {
    /// The producer's negotiated `ssrc-audio-level` id (none: it never speaks).
    ext_id: Option<u8>,
    /// Speech packets in the open interval.
    current: u16,
    /// Speech packets of the last closed intervals (ring).
    closed: [u16; WINDOW],
    cursor: usize,
    last_speech: Option<Instant>,
}

impl LevelMeter {
    /// A meter for a producer with this mapping (video producers get one that never counts).
    pub fn new(kind: MediaKind, mapping: &ProducerMapping) -> Self {
        let ext_id = match kind {
            MediaKind::Audio => mapping.ext_id(ortc::uri::SSRC_AUDIO_LEVEL),
            MediaKind::Video => None,
        };
        Self {
            ext_id,
            current: 0,
            closed: [0; WINDOW],
            cursor: 0,
            last_speech: None,
        }
    }

    /// One received packet (already validated by `rtp::parse_rtp`).
    pub fn on_packet(&mut self, plain: &[u8], hdr: &rtp::RtpHeader, now: Instant) {
        let Some(id) = self.ext_id else {
            return;
        };
        if let Some((level, _voice)) = rtp::audio_level(plain, hdr, id) {
            if level < SPEECH_MAX_LEVEL {
                self.current = self.current.saturating_add(1);
                self.last_speech = Some(now);
            }
        }
    }

    /// Closes the open interval; returns the score: speech packets of the last [`WINDOW`]
    /// intervals.
    pub fn roll(&mut self) -> u32 {
        if let Some(slot) = self.closed.get_mut(self.cursor) {
            *slot = std::mem::take(&mut self.current);
        }
        self.cursor = (self.cursor + 1) % WINDOW;
        self.closed.iter().map(|&n| u32::from(n)).sum()
    }

    /// Forgets all speech (a paused producer starts from silence when resumed).
    pub fn reset(&mut self) {
        self.current = 0;
        self.closed = [0; WINDOW];
        self.last_speech = None;
    }

    pub fn last_speech(&self) -> Option<Instant> {
        self.last_speech
    }
}

/// An audio producer as one evaluation sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub key: PKey,
    pub score: u32,
    pub last_speech: Option<Instant>,
    pub paused: bool,
}

impl Candidate {
    /// Whether it may be (or stay) dominant at `now`.
    fn eligible(&self, now: Instant) -> bool {
        !self.paused
            && self
                .last_speech
                .is_some_and(|t| now.saturating_duration_since(t) < SILENCE_TIMEOUT)
    }
}

/// Who is to be announced to a room's peers: the dominant speaker's peer and producer.
pub type Announced = Option<(Arc<str>, String)>;

/// The dominant-speaker decision of one room (home), and what its peers were last told
/// (home and replicas).
#[derive(Debug, Default)]
pub struct ActiveSpeaker {
    current: Option<PKey>,
    /// The challenger outscoring the current speaker, and for how many evaluations in a row.
    challenger: Option<(PKey, u8)>,
    last_eval: Option<Instant>,
    /// The last `active-speaker` this worker's peers got (`None`: nobody, or never told).
    pub announced: Announced,
}

impl ActiveSpeaker {
    /// Whether an evaluation is due at `now` (and, if so, starts it).
    pub fn due(&mut self, now: Instant) -> bool {
        if self
            .last_eval
            .is_some_and(|t| now.saturating_duration_since(t) < MIN_EVAL_INTERVAL)
        {
            return false;
        }
        self.last_eval = Some(now);
        true
    }

    /// The dominant producer, if any.
    pub fn current(&self) -> Option<PKey> {
        self.current
    }

    /// One evaluation over the room's audio producers; `Some(new)` when the dominant speaker
    /// changed (`Some(None)`: nobody any more).
    pub fn decide(&mut self, candidates: &[Candidate], now: Instant) -> Option<Option<PKey>> {
        let current = self
            .current
            .and_then(|k| candidates.iter().find(|c| c.key == k))
            .filter(|c| c.eligible(now));
        let best = candidates
            .iter()
            .filter(|c| Some(c.key) != self.current && c.score > 0 && c.eligible(now))
            // Ties: the one that spoke last, then the lower key (deterministic).
            .max_by(|a, b| {
                (a.score, a.last_speech, std::cmp::Reverse(a.key)).cmp(&(
                    b.score,
                    b.last_speech,
                    std::cmp::Reverse(b.key),
                ))
            });
        let Some(current) = current else {
            self.challenger = None;
            let next = best.map(|c| c.key);
            if next == self.current {
                return None;
            }
            self.current = next;
            return Some(next);
        };
        match best.filter(|b| b.score > current.score) {
            Some(b) => {
                let streak = match self.challenger {
                    Some((k, n)) if k == b.key => n.saturating_add(1),
                    _ => 1,
                };
                if streak >= CHALLENGE_INTERVALS {
                    self.current = Some(b.key);
                    self.challenger = None;
                    return Some(self.current);
                }
                self.challenger = Some((b.key, streak));
                None
            }
            None => {
                self.challenger = None;
                None
            }
        }
    }
}

/// The notification for what is announced.
pub fn notice(announced: &Announced) -> Notice {
    Notice::ActiveSpeaker {
        peer_id: announced.as_ref().map(|(peer, _)| peer.clone()),
        producer_id: announced.as_ref().map(|(_, producer)| producer.clone()),
    }
}

impl Router {
    /// From the router's tick: on the home, closes the interval of every audio producer and
    /// announces a change of dominant speaker to the whole room.
    pub(crate) fn evaluate_speaker(&mut self, env: &Env, now: Instant) {
        if !self.is_home() || !self.speaker.due(now) {
            return;
        }
        let candidates: Vec<Candidate> = self
            .producers
            .iter_mut()
            .filter(|(_, p)| p.kind == MediaKind::Audio)
            .map(|(&key, p)| {
                if p.paused {
                    p.level.reset();
                }
                Candidate {
                    key,
                    score: p.level.roll(),
                    last_speech: p.level.last_speech(),
                    paused: p.paused,
                }
            })
            .collect();
        let Some(change) = self.speaker.decide(&candidates, now) else {
            return;
        };
        let announced = change
            .and_then(|k| self.producers.get(&k))
            .map(|p| (p.peer.clone(), p.id.clone()));
        if announced == self.speaker.announced {
            return;
        }
        self.tell_local_peers(env, announced.clone());
        let from = env.worker;
        self.propagate(
            env,
            |room| PipeMsg::ActiveSpeaker {
                room,
                from,
                speaker: announced.clone(),
            },
            None,
        );
    }

    /// Home → this satellite: the room's dominant speaker changed.
    pub fn on_active_speaker(
        &mut self,
        env: &Env,
        room: &RoomTag,
        from: usize,
        speaker: Announced,
    ) {
        if self.is_replica_of(env, room, from) && speaker != self.speaker.announced {
            self.tell_local_peers(env, speaker);
        }
    }

    /// Tells a peer that just joined who is speaking (nothing if nobody is).
    pub fn tell_speaker(&self, env: &Env, conn: ConnId) {
        if self.speaker.announced.is_some() {
            env.notify(conn, notice(&self.speaker.announced));
        }
    }

    /// The home → a new satellite, before its first peer: who is speaking.
    pub(crate) fn send_speaker(&self, env: &Env, worker: usize) {
        if self.speaker.announced.is_some() {
            env.mesh.send(
                worker,
                PipeMsg::ActiveSpeaker {
                    room: self.tag(),
                    from: env.worker,
                    speaker: self.speaker.announced.clone(),
                },
            );
        }
    }

    fn tell_local_peers(&mut self, env: &Env, announced: Announced) {
        let notice = notice(&announced);
        self.speaker.announced = announced;
        for p in self.peers.iter().filter(|p| p.worker == env.worker) {
            env.notify(p.conn, notice.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: PKey = 1;
    const B: PKey = 2;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    fn speaking(key: PKey, score: u32, last: Instant) -> Candidate {
        Candidate {
            key,
            score,
            last_speech: Some(last),
            paused: false,
        }
    }

    fn audio_packet(level: u8) -> Vec<u8> {
        let mut p = vec![0x90, 111, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9];
        p.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, level, 0, 0]);
        p.extend_from_slice(&[0xfc, 0xff, 0xfe]);
        p
    }

    fn meter() -> LevelMeter {
        LevelMeter {
            ext_id: Some(1),
            current: 0,
            closed: [0; WINDOW],
            cursor: 0,
            last_speech: None,
        }
    }

    #[test]
    fn a_meter_counts_packets_louder_than_the_threshold_over_its_window() {
        let t0 = Instant::now();
        let mut m = meter();
        for level in [10, 49, 50, 127, 0x80 | 20] {
            let p = audio_packet(level);
            m.on_packet(&p, &rtp::parse_rtp(&p).expect("rtp"), t0);
        }
        assert_eq!(
            m.roll(),
            3,
            "10, 49 and 20 (V bit set) are speech; 50, 127 not"
        );
        for _ in 1..WINDOW {
            assert_eq!(m.roll(), 3, "still within the window");
        }
        assert_eq!(m.roll(), 0, "out of the window");
        assert_eq!(m.last_speech(), Some(t0));
        m.reset();
        assert_eq!(m.last_speech(), None);
    }

    #[test]
    fn a_meter_without_the_extension_never_counts() {
        let mut m = meter();
        m.ext_id = None;
        let p = audio_packet(0);
        m.on_packet(&p, &rtp::parse_rtp(&p).expect("rtp"), Instant::now());
        assert_eq!(m.roll(), 0);
        assert_eq!(m.last_speech(), None);
    }

    #[test]
    fn the_first_speaker_is_dominant_at_once_and_only_if_it_spoke() {
        let t0 = Instant::now();
        let mut s = ActiveSpeaker::default();
        let silent = Candidate {
            key: B,
            score: 0,
            last_speech: None,
            paused: false,
        };
        assert_eq!(
            s.decide(&[silent], t0),
            None,
            "nobody spoke: nothing to say"
        );
        assert_eq!(s.decide(&[speaking(A, 3, t0), silent], t0), Some(Some(A)));
        assert_eq!(s.decide(&[speaking(A, 3, t0), silent], at(t0, 250)), None);
    }

    #[test]
    fn a_challenger_must_outscore_the_speaker_twice_in_a_row() {
        let t0 = Instant::now();
        let mut s = ActiveSpeaker::default();
        assert_eq!(s.decide(&[speaking(A, 2, t0)], t0), Some(Some(A)));
        // B louder once, then equal: A stays.
        let t = at(t0, 250);
        assert_eq!(s.decide(&[speaking(A, 2, t), speaking(B, 5, t)], t), None);
        let t = at(t0, 500);
        assert_eq!(s.decide(&[speaking(A, 5, t), speaking(B, 5, t)], t), None);
        // Louder once again: the streak starts over, so not yet.
        let t = at(t0, 750);
        assert_eq!(s.decide(&[speaking(A, 2, t), speaking(B, 6, t)], t), None);
        let t = at(t0, 1000);
        assert_eq!(
            s.decide(&[speaking(A, 2, t), speaking(B, 6, t)], t),
            Some(Some(B))
        );
        assert_eq!(s.current(), Some(B));
    }

    #[test]
    fn a_dominant_speaker_silent_for_two_seconds_gives_way_to_nobody() {
        let t0 = Instant::now();
        let mut s = ActiveSpeaker::default();
        assert_eq!(s.decide(&[speaking(A, 2, t0)], t0), Some(Some(A)));
        // Its score fell to 0 but it spoke within 2 s: it stays.
        assert_eq!(s.decide(&[speaking(A, 0, t0)], at(t0, 1900)), None);
        assert_eq!(s.decide(&[speaking(A, 0, t0)], at(t0, 2000)), Some(None));
        assert_eq!(s.decide(&[speaking(A, 0, t0)], at(t0, 2250)), None);
    }

    #[test]
    fn a_silent_speaker_gives_way_at_once_to_one_who_speaks() {
        let t0 = Instant::now();
        let mut s = ActiveSpeaker::default();
        s.decide(&[speaking(A, 2, t0)], t0);
        let t = at(t0, 2100);
        assert_eq!(
            s.decide(&[speaking(A, 0, t0), speaking(B, 1, t)], t),
            Some(Some(B))
        );
    }

    #[test]
    fn a_paused_producer_is_never_dominant_and_loses_dominance_at_once() {
        let t0 = Instant::now();
        let mut s = ActiveSpeaker::default();
        let paused = |key, score| Candidate {
            paused: true,
            ..speaking(key, score, t0)
        };
        assert_eq!(s.decide(&[paused(A, 9)], t0), None);
        assert_eq!(
            s.decide(&[paused(A, 9), speaking(B, 1, t0)], t0),
            Some(Some(B))
        );
        let t = at(t0, 250);
        assert_eq!(s.decide(&[paused(A, 9), paused(B, 1)], t), Some(None));
    }

    #[test]
    fn a_closed_speaker_gives_way_at_once() {
        let t0 = Instant::now();
        let mut s = ActiveSpeaker::default();
        s.decide(&[speaking(A, 5, t0), speaking(B, 1, t0)], t0);
        assert_eq!(s.current(), Some(A));
        let t = at(t0, 250);
        assert_eq!(s.decide(&[speaking(B, 1, t)], t), Some(Some(B)));
        assert_eq!(s.decide(&[], at(t0, 500)), Some(None));
    }

    #[test]
    fn evaluations_are_spaced_by_the_minimum_interval() {
        let t0 = Instant::now();
        let mut s = ActiveSpeaker::default();
        assert!(s.due(t0));
        assert!(!s.due(at(t0, 100)));
        assert!(s.due(at(t0, 250)));
    }
}
