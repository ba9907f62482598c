//! Bandwidth-adaptive delivery on the send side of a recv transport: the transport-wide
//! sequence numbers stamped on every packet we send, the estimate from the subscriber's
//! transport-cc feedback (rtc/bwe.rs), the layer allocation across the transport's video
//! consumers (room/alloc.rs), probing before a layer goes up, and dynacast (telling a publisher
//! which of its simulcast layers anybody needs).
//!
//! A transport's estimate limits nothing until its first feedback: a subscriber that sends no
//! transport-cc (or cannot) is served as before, by preferred layer only.

use super::alloc::{self, Demand, MAX_LAYERS};
use super::api::Notice;
use super::env::Env;
use super::ortc::MediaKind;
use super::router::Router;
use super::{CKey, TKey};
use crate::rtc::bwe::{self, BweConfig, Estimator, Signal};
use crate::rtc::rtcp;
use crate::rtc::rtp;
use crate::rtc::srtp::SrtpSession;
use crate::rtc::srtp::MAX_RTP_TAG_LEN;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The share of the estimate the allocator hands out (the rest absorbs estimate noise, RTX and
/// RTCP).
const BUDGET_SHARE: f64 = 0.95;
/// A probe's result is taken at the first feedback after this (longer than the
/// acknowledged-rate window, so a shaper's burst allowance at its start does not pass for
/// capacity); without feedback it is given up after [`PROBE_MAX`].
const PROBE_MIN: Duration = Duration::from_millis(800);
const PROBE_MAX: Duration = Duration::from_millis(1500);
/// A probe fails when the subscriber reports more than this share of its packets lost, or as
/// soon as the queuing delay grew this much since it started (the link is full: stop before
/// the bottleneck's queue overflows into media loss).
const PROBE_MAX_LOSS: f64 = 0.02;
const PROBE_MAX_DELAY_RISE_MS: f64 = 30.0;
/// An allocation below the current one applies only after it persisted this long (an estimate
/// dipping for a moment does not cost a key frame and a freeze), unless the budget fell below
/// [`DOWN_AT_ONCE`] of what the current allocation uses.
const DOWN_HOLD: Duration = Duration::from_millis(600);
const DOWN_AT_ONCE: f64 = 0.7;
/// A probe aims this far above what the next step needs (one probe per step: small probes
/// would pass on a shaper's burst allowance and climb where the link cannot follow), and at
/// most this multiple of the estimate.
const PROBE_OVERSHOOT: f64 = 1.1;
const PROBE_MAX_STEP: f64 = 2.5;
/// After a failed probe, the estimate is held at its value before the probe this long (the
/// queue the probe built drains meanwhile).
const PROBE_GRACE: Duration = Duration::from_millis(1000);
/// No probe starts within this of a cut of the estimate, nor while the queuing delay exceeds
/// this (ms).
const PROBE_AFTER_CUT: Duration = Duration::from_millis(2000);
const PROBE_START_MAX_DELAY_MS: f64 = 15.0;
/// Waits between failed probes: doubling from the first to the last.
const PROBE_BACKOFF_FIRST: Duration = Duration::from_secs(1);
const PROBE_BACKOFF_MAX: Duration = Duration::from_secs(4);
/// Padding bytes per probe packet (the RTP padding length is one byte).
const PADDING_LEN: usize = 240;
/// Padding packets one media packet may bring along at most, and one router tick when no video
/// flows to pad alongside (every video consumer paused for bandwidth).
const MAX_PADDING_BURST: usize = 16;
const MAX_TICK_PADDING: usize = 64;
/// Dynacast: a producer's upper layers are given up only after nobody needed them this long.
pub const DYNACAST_HOLD: Duration = Duration::from_secs(5);

/// One recv transport's send-side estimation state.
pub struct SendBwe {
    next_seq: u16,
    pub estimator: Estimator,
    /// Feedback arrived at least once: the estimate governs the allocation.
    pub active: bool,
    /// Reused for every feedback packet (no allocation per packet).
    feedback: Vec<(u16, Option<i64>)>,
    probe: Option<Probe>,
    /// The estimate before the last failed probe, held until the instant.
    grace: Option<(u64, Instant)>,
    next_probe_at: Option<Instant>,
    backoff: Duration,
    /// The media bit rate of the last allocation (audio + video), which padding tops up.
    media_bps: u64,
    /// Padding owed to the running probe, in bytes, and when it was last topped up.
    pad_owed: f64,
    pad_at: Option<Instant>,
    /// When a video packet last went out (probes pad alongside video).
    video_sent_at: Option<Instant>,
    /// Bytes sent as media, as retransmissions and as padding since the last trace (the
    /// `estimate` trace line at `sfu::room::adapt=trace` shows them as rates).
    pub sent: SentBytes,
}

/// Bytes a transport sent by kind, between two adaptation ticks.
#[derive(Debug, Default, Clone, Copy)]
pub struct SentBytes {
    pub media: u64,
    pub rtx: u64,
    pub padding: u64,
    since: Option<Instant>,
}

impl SentBytes {
    /// The rates (kbit/s) since the last call, and a fresh count.
    fn take_kbps(&mut self, now: Instant) -> (u64, u64, u64) {
        let secs = self
            .since
            .map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64());
        let kbps = |b: u64| {
            if secs > 0.0 {
                (b as f64 * 8.0 / secs / 1000.0) as u64
            } else {
                0
            }
        };
        let r = (kbps(self.media), kbps(self.rtx), kbps(self.padding));
        *self = Self {
            since: Some(now),
            ..Self::default()
        };
        r
    }
}

#[derive(Debug, Clone, Copy)]
struct Probe {
    target_bps: u64,
    started: Instant,
    /// The estimate and the queuing delay when it started.
    before_bps: u64,
    before_delay_ms: f64,
    /// Packets the subscriber reported on during the probe, and of them lost.
    reported: u32,
    lost: u32,
}

impl SendBwe {
    pub fn new(now: Instant) -> Self {
        Self {
            next_seq: 0,
            estimator: Estimator::new(BweConfig::default(), now),
            active: false,
            feedback: Vec::with_capacity(256),
            probe: None,
            grace: None,
            next_probe_at: None,
            backoff: PROBE_BACKOFF_FIRST,
            media_bps: 0,
            pad_owed: 0.0,
            pad_at: None,
            video_sent_at: None,
            sent: SentBytes::default(),
        }
    }

    /// The next transport-wide sequence number.
    pub fn next_seq(&mut self) -> u16 {
        let s = self.next_seq;
        self.next_seq = s.wrapping_add(1);
        s
    }

    pub fn probing(&self) -> bool {
        self.probe.is_some()
    }

    /// A video packet went out (probes pad alongside video).
    pub fn video_sent(&mut self, now: Instant) {
        self.video_sent_at = Some(now);
    }

    /// No video went out recently: a probe pads from the router tick instead.
    fn video_idle(&self, now: Instant) -> bool {
        self.video_sent_at
            .is_none_or(|t| now.saturating_duration_since(t) > Duration::from_millis(100))
    }

    /// The budget the allocator hands out, or None while the estimate does not govern.
    fn budget(&self) -> Option<u64> {
        self.active
            .then(|| (self.estimator.estimate_bps() as f64 * BUDGET_SHARE) as u64)
    }

    /// Feedback `packet` (one RTCP transport-cc packet) arrived.
    fn on_feedback(&mut self, packet: &[u8], now: Instant) {
        self.feedback.clear();
        if bwe::parse_feedback(packet, &mut self.feedback).is_err() {
            return;
        }
        self.active = true;
        self.estimator.on_feedback(&self.feedback, now);
        self.hold_during_grace(now);
        let Some(probe) = self.probe.as_mut() else {
            return;
        };
        probe.reported += self.feedback.len() as u32;
        probe.lost += self.feedback.iter().filter(|(_, a)| a.is_none()).count() as u32;
        let probe = *probe;
        let lossy = probe.reported >= 20
            && f64::from(probe.lost) > PROBE_MAX_LOSS * f64::from(probe.reported);
        let queued = self
            .estimator
            .queuing_delay_ms()
            .is_some_and(|d| d - probe.before_delay_ms > PROBE_MAX_DELAY_RISE_MS);
        let overuse = self.estimator.signal() == Signal::Overuse;
        if overuse || lossy || queued {
            tracing::debug!(overuse, lossy, queued, "probe stopped early");
            self.end_probe(false, now);
            return;
        }
        let elapsed = now.saturating_duration_since(probe.started);
        let acked = self.estimator.acked_bps().unwrap_or(0.0);
        if elapsed < PROBE_MIN {
            return;
        }
        let succeeded = acked >= 0.9 * probe.target_bps as f64;
        if succeeded {
            self.estimator.on_probe_result(acked as u64, now);
        }
        self.end_probe(succeeded, now);
    }

    fn hold_during_grace(&mut self, now: Instant) {
        match self.grace {
            Some((bps, until)) if now < until => self.estimator.hold_at_least(bps),
            Some(_) => self.grace = None,
            None => {}
        }
    }

    fn end_probe(&mut self, succeeded: bool, now: Instant) {
        tracing::debug!(
            succeeded,
            target_bps = self.probe.map_or(0, |p| p.target_bps),
            estimate_bps = self.estimator.estimate_bps(),
            "probe ended"
        );
        if let (false, Some(p)) = (succeeded, self.probe) {
            self.estimator.set_estimate(p.before_bps);
            self.grace = Some((p.before_bps, now + PROBE_GRACE));
        }
        self.probe = None;
        self.pad_owed = 0.0;
        if succeeded {
            self.backoff = PROBE_BACKOFF_FIRST;
            self.next_probe_at = Some(now + Duration::from_millis(250));
        } else {
            self.next_probe_at = Some(now + self.backoff);
            self.backoff = (self.backoff * 2).min(PROBE_BACKOFF_MAX);
        }
    }

    /// After an allocation: starts a probe when a step up is wanted and due, gives up one that
    /// got no feedback.
    fn plan_probe(&mut self, next_step_bps: Option<u64>, now: Instant) {
        if let Some(p) = self.probe {
            if now.saturating_duration_since(p.started) >= PROBE_MAX {
                self.end_probe(false, now);
            }
            return;
        }
        let Some(step) = next_step_bps else {
            return;
        };
        // Not while the link shows it is full: just after a cut (the queue that caused it
        // still drains, and padding would overflow it into media loss) or while packets queue.
        let cut_recently = self
            .estimator
            .since_cut(now)
            .is_some_and(|d| d < PROBE_AFTER_CUT);
        let queuing = self
            .estimator
            .queuing_delay_ms()
            .is_some_and(|d| d > PROBE_START_MAX_DELAY_MS);
        if self.next_probe_at.is_some_and(|t| now < t)
            || self.estimator.signal() == Signal::Overuse
            || cut_recently
            || queuing
        {
            return;
        }
        let estimate = self.estimator.estimate_bps() as f64;
        let wanted = step as f64 / BUDGET_SHARE * PROBE_OVERSHOOT;
        let target = wanted.min(estimate * PROBE_MAX_STEP);
        if target <= self.media_bps as f64 {
            return;
        }
        self.probe = Some(Probe {
            target_bps: target as u64,
            started: now,
            before_bps: self.estimator.estimate_bps(),
            before_delay_ms: self.estimator.queuing_delay_ms().unwrap_or(0.0),
            reported: 0,
            lost: 0,
        });
        self.pad_owed = 0.0;
        self.pad_at = Some(now);
    }

    /// How many padding packets are owed now (topped up by the time since the last call), at
    /// most `max`.
    fn padding_due(&mut self, now: Instant, max: usize) -> usize {
        let Some(p) = self.probe else {
            return 0;
        };
        let since = self
            .pad_at
            .map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64());
        self.pad_at = Some(now);
        let extra_bps = p.target_bps.saturating_sub(self.media_bps) as f64;
        self.pad_owed = (self.pad_owed + extra_bps / 8.0 * since.min(0.25))
            .min((MAX_TICK_PADDING * PADDING_LEN) as f64);
        let n = ((self.pad_owed / PADDING_LEN as f64) as usize).min(max);
        self.pad_owed -= (n * PADDING_LEN) as f64;
        n
    }
}

/// Where padding for one transport goes: a video consumer's RTX stream.
struct PadVia {
    ssrc: u32,
    pt: u8,
    twcc_ext: u8,
    /// The consumer's mid extension (id, value bytes, length), copied: no allocation per probe
    /// packet (a longer mid than one-byte form carries is left out).
    mid: Option<(u8, [u8; 16], usize)>,
}

impl Router {
    /// Transport-cc feedback from the subscriber of recv transport `tkey`.
    pub(crate) fn on_transport_feedback(&mut self, tkey: TKey, packet: &[u8], now: Instant) {
        if let Some(b) = self.transports.get_mut(&tkey).and_then(|t| t.bwe.as_mut()) {
            b.on_feedback(packet, now);
        }
    }

    /// Sends what a running probe owes on transport `tkey` as padding on consumer `ckey`'s RTX
    /// stream: after a packet of that consumer went out, or (`from_tick`) from the router tick
    /// when no video flows.
    pub(crate) fn pad_probe(
        &mut self,
        env: &mut Env,
        tkey: TKey,
        ckey: CKey,
        now: Instant,
        from_tick: bool,
    ) {
        let Some(c) = self.consumers.get_mut(&ckey) else {
            return;
        };
        let (Some(ssrc), Some(pt), Some(ext)) = (c.rtx_ssrc, c.rtx_pt, c.twcc_ext) else {
            return;
        };
        let via = PadVia {
            ssrc,
            pt,
            twcc_ext: ext,
            mid: c.mid().filter(|(_, v)| v.len() <= 16).map(|(id, v)| {
                let mut bytes = [0u8; 16];
                bytes[..v.len()].copy_from_slice(v);
                (id, bytes, v.len())
            }),
        };
        let ts = c.fwd.rtp_time_at(now).unwrap_or(0);
        let Some(t) = self.transports.get_mut(&tkey) else {
            return;
        };
        let (Some(to), Some(srtp), Some(b)) = (t.remote, t.srtp.as_mut(), t.bwe.as_mut()) else {
            return;
        };
        let max = if from_tick {
            MAX_TICK_PADDING
        } else {
            MAX_PADDING_BURST
        };
        let n = b.padding_due(now, max);
        for _ in 0..n {
            let rtx_seq = c.fwd.next_rtx_seq();
            if !send_padding(env, srtp, b, &via, rtx_seq, ts, to, now) {
                break;
            }
        }
    }

    /// Periodic adaptation (every router tick, ≈ 250 ms): the estimate ages, each transport's
    /// allocation is redone and applied, probes start and end, dynacast is told.
    pub(crate) fn adapt(&mut self, env: &mut Env, now: Instant) {
        let tkeys: Vec<TKey> = self
            .transports
            .iter()
            .filter(|(_, t)| t.bwe.is_some())
            .map(|(k, _)| *k)
            .collect();
        for tkey in tkeys {
            self.adapt_transport(env, tkey, now);
        }
        self.dynacast(env, now);
    }

    fn adapt_transport(&mut self, env: &mut Env, tkey: TKey, now: Instant) {
        let speaker_peer = self.speaker.announced.as_ref().map(|(p, _)| p.clone());
        let Some(t) = self.transports.get_mut(&tkey) else {
            return;
        };
        let Some(b) = t.bwe.as_mut() else {
            return;
        };
        b.estimator.on_tick(now);
        let Some(budget) = b.budget() else {
            return;
        };
        let (media_kbps, rtx_kbps, padding_kbps) = b.sent.take_kbps(now);
        tracing::trace!(
            transport = %t.id,
            media_kbps,
            rtx_kbps,
            padding_kbps,
            estimate_bps = b.estimator.estimate_bps(),
            acked_bps = b.estimator.acked_bps().unwrap_or(0.0) as u64,
            signal = ?b.estimator.signal(),
            queuing_ms = b.estimator.queuing_delay_ms().unwrap_or(0.0) as i64,
            probing = b.probing(),
            "estimate"
        );
        // The transport's consumers (each once: the index also holds RTX SSRCs).
        let ckeys: Vec<CKey> = t
            .consumers_by_ssrc
            .iter()
            .filter(|(ssrc, c)| self.consumers.get(c).is_some_and(|c| c.ssrc == **ssrc))
            .map(|(_, c)| *c)
            .collect();
        // What passes unallocated (audio, single-encoding video).
        let mut fixed_bps = 0u64;
        let mut video: Vec<(CKey, Demand)> = Vec::new();
        for ckey in ckeys {
            let Some(c) = self.consumers.get(&ckey) else {
                continue;
            };
            let Some(p) = self.producers.get(&c.producer) else {
                continue;
            };
            if c.paused || p.paused {
                continue;
            }
            // Audio always passes; so does single-encoding video (there is no layer to step
            // down to, and pausing it on a young estimate would blank it): both only take
            // their share off the top.
            if c.kind == MediaKind::Audio || p.ssrcs.len() < 2 {
                fixed_bps += p.quality.layers.first().map_or(0, |l| l.rate.bps());
                continue;
            }
            let layers = p.ssrcs.len().clamp(1, MAX_LAYERS);
            let mut bps = [0u64; MAX_LAYERS];
            for (slot, l) in bps.iter_mut().zip(&p.quality.layers) {
                *slot = l.rate.bps();
            }
            let top = layers - 1;
            let speaker = speaker_peer.as_deref() == Some(&*p.peer);
            video.push((
                ckey,
                Demand {
                    priority: alloc::priority(p.label.is_screen(), speaker),
                    max_layer: c
                        .preferred_spatial_layer
                        .map_or(top, |l| usize::from(l).min(top)),
                    layers,
                    bps,
                    active: p.quality.active_layers(now),
                    current: if c.bw_paused {
                        None
                    } else {
                        c.bw_layer.or(Some(top))
                    },
                },
            ));
        }
        let demands: Vec<Demand> = video.iter().map(|(_, d)| *d).collect();
        let video_budget = budget.saturating_sub(fixed_bps);
        let current_bps: u64 = demands
            .iter()
            .filter_map(|d| d.current.map(|l| d.cost(l)))
            .sum();
        let severe = (video_budget as f64) < DOWN_AT_ONCE * current_bps as f64;
        let a = alloc::allocate(video_budget, &demands);
        // What each would get were every layer sending (dynacast asks publishers for those).
        let all: Vec<Demand> = demands
            .iter()
            .map(|d| Demand {
                active: (1u32 << d.layers) - 1,
                ..*d
            })
            .collect();
        let wants = alloc::allocate(video_budget, &all);
        let mut pad_from_tick = false;
        if let Some(b) = self.transports.get_mut(&tkey).and_then(|t| t.bwe.as_mut()) {
            b.media_bps = a.used_bps + fixed_bps;
            // Also a step only an idle layer allows: dynacast stopped it, and without a probe the
            // estimate would never show it fits again.
            let step = a.next_step_bps.or(wants.next_step_bps);
            b.plan_probe(step.map(|v| v + fixed_bps), now);
            pad_from_tick = b.probing() && b.video_idle(now);
        }
        if pad_from_tick {
            let via = video.iter().map(|(c, _)| *c).find(|c| {
                self.consumers
                    .get(c)
                    .is_some_and(|c| c.rtx_ssrc.is_some() && c.rtx_pt.is_some())
            });
            if let Some(ckey) = via {
                self.pad_probe(env, tkey, ckey, now, true);
            }
        }
        for (((ckey, _), layer), want) in video.iter().zip(&a.layers).zip(&wants.layers) {
            let applied = self.apply_allocation(env, *ckey, *layer, want.unwrap_or(0), severe, now);
            if applied {
                tracing::debug!(
                    consumer = %self.consumers.get(ckey).map_or("", |c| c.id.as_str()),
                    layer = ?layer,
                    budget_bps = video_budget,
                    "bandwidth allocation changed"
                );
            }
        }
    }

    /// Applies one consumer's allocation: its layer cap, or a pause (told to the subscriber)
    /// when nothing fits, and a resume (with a key frame) when something fits again. True when
    /// the allocation changed.
    fn apply_allocation(
        &mut self,
        env: &mut Env,
        ckey: CKey,
        layer: Option<usize>,
        want: usize,
        severe: bool,
        now: Instant,
    ) -> bool {
        let Some(c) = self.consumers.get_mut(&ckey) else {
            return false;
        };
        c.want_layer = want;
        // None (paused) < layer 0 < layer 1 < … < no limit yet.
        let rank = |l: Option<usize>| l.map_or(0, |l| l.saturating_add(1));
        let current = if c.bw_paused {
            None
        } else {
            Some(c.bw_layer.unwrap_or(usize::MAX - 1))
        };
        if rank(layer) < rank(current) && !severe {
            let since = *c.bw_down_since.get_or_insert(now);
            if now.saturating_duration_since(since) < DOWN_HOLD {
                return false;
            }
        }
        c.bw_down_since = None;
        let changed = rank(layer) != rank(current);
        let was_paused = c.bw_paused;
        c.bw_paused = layer.is_none();
        if let Some(l) = layer {
            c.bw_layer = Some(l);
        }
        match (was_paused, layer) {
            (false, None) => {
                env.stats.bandwidth_pauses.fetch_add(1, Ordering::Relaxed);
                let (id, peer) = (c.id.clone(), c.peer.clone());
                if let Some(conn) = self.conn_of(&peer, env.worker) {
                    env.notify(
                        conn,
                        Notice::ConsumerLayersChanged {
                            consumer_id: id,
                            spatial_layer: None,
                            temporal_layer: None,
                        },
                    );
                }
            }
            (true, Some(_)) => {
                // Continues at a key frame of its layer (the packet path asks for it); the
                // layer notice follows with the first packet.
                c.fwd.resync();
                c.fwd.forget_layer();
            }
            _ => {}
        }
        changed
    }

    /// Dynacast: tells each local simulcast producer's publisher the highest spatial layer
    /// anybody needs (HLS taps and other workers' consumers need the top one), at once when it
    /// rises, after [`DYNACAST_HOLD`] when it falls.
    fn dynacast(&mut self, env: &mut Env, now: Instant) {
        let mut notices = Vec::new();
        for (pkey, p) in &mut self.producers {
            let layers = p.ssrcs.len();
            if p.kind != MediaKind::Video || layers < 2 || p.is_piped() {
                continue;
            }
            let top = layers - 1;
            let needed =
                if !p.pipes().is_empty() || self.taps.get(pkey).is_some_and(|t| !t.is_empty()) {
                    top
                } else {
                    p.consumers
                        .iter()
                        .filter_map(|c| self.consumers.get(c))
                        .filter(|c| !c.paused && !c.bw_paused)
                        .map(|c| c.want_layer.min(top))
                        .max()
                        .unwrap_or(0)
                };
            if let Some(told) = p.dynacast.decide(needed, top, now) {
                notices.push((p.peer.clone(), p.id.clone(), told));
            }
        }
        for (peer, producer_id, spatial_layer) in notices {
            if let Some(conn) = self.conn_of(&peer, env.worker) {
                env.notify(
                    conn,
                    Notice::ProducerMaxSpatialLayer {
                        producer_id,
                        spatial_layer,
                    },
                );
            }
        }
    }
}

/// What a simulcast producer's publisher was last told it needs to send.
#[derive(Debug, Default, Clone, Copy)]
pub struct Dynacast {
    /// The highest layer told (None: nothing told, all layers are sent).
    told: Option<usize>,
    lower_since: Option<Instant>,
}

impl Dynacast {
    /// The layer to tell now, if any: `needed` at once when above what was told, after
    /// [`DYNACAST_HOLD`] when below.
    pub fn decide(&mut self, needed: usize, top: usize, now: Instant) -> Option<usize> {
        let told = self.told.unwrap_or(top);
        if needed >= told {
            self.lower_since = None;
            if needed > told {
                self.told = Some(needed);
                return Some(needed);
            }
            return None;
        }
        let since = *self.lower_since.get_or_insert(now);
        if now.saturating_duration_since(since) < DYNACAST_HOLD {
            return None;
        }
        self.lower_since = None;
        self.told = Some(needed);
        Some(needed)
    }
}

/// Builds, protects and queues one padding-only packet on the RTX stream `via`; false when the
/// packet could not be protected.
#[allow(clippy::too_many_arguments)]
fn send_padding(
    env: &mut Env,
    srtp: &mut SrtpSession,
    b: &mut SendBwe,
    via: &PadVia,
    rtx_seq: u16,
    ts: u32,
    to: super::remote::Remote,
    now: Instant,
) -> bool {
    let seq = b.next_seq();
    let out = &mut env.scratch;
    rtp::build_padding(
        out,
        &rtp::Padding {
            ssrc: via.ssrc,
            payload_type: via.pt,
            sequence: rtx_seq,
            timestamp: ts,
            twcc: (via.twcc_ext, seq),
            mid: via.mid.as_ref().map(|(id, v, len)| (*id, &v[..*len])),
            len: PADDING_LEN,
        },
    );
    out.reserve(MAX_RTP_TAG_LEN);
    if srtp.protect_rtp_in_place(out).is_err() {
        return false;
    }
    b.estimator.on_sent_padding(seq, out.len(), now);
    b.sent.padding += out.len() as u64;
    env.stats.padding_sent.fetch_add(1, Ordering::Relaxed);
    env.stats.packets_out.fetch_add(1, Ordering::Relaxed);
    env.stats
        .bytes_out
        .fetch_add(out.len() as u64, Ordering::Relaxed);
    env.outbox.push(to, out);
    true
}

/// The RTCP transport-cc packets of a compound packet.
pub fn transport_cc_packets(compound: &[u8]) -> impl Iterator<Item = &[u8]> {
    rtcp::split_compound(compound)
        .flatten()
        .filter(|p| p.len() >= 2 && p[0] & 0x1f == 15 && p[1] == 205)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynacast_raises_at_once_and_lowers_after_the_hold() {
        let t0 = Instant::now();
        let mut d = Dynacast::default();
        assert_eq!(
            d.decide(2, 2, t0),
            None,
            "all layers are sent to begin with"
        );
        assert_eq!(d.decide(0, 2, t0), None);
        assert_eq!(d.decide(0, 2, t0 + DYNACAST_HOLD / 2), None);
        assert_eq!(d.decide(0, 2, t0 + DYNACAST_HOLD), Some(0));
        assert_eq!(
            d.decide(1, 2, t0 + DYNACAST_HOLD),
            Some(1),
            "raised at once"
        );
        // A need that dips only briefly is not told.
        assert_eq!(d.decide(0, 2, t0 + DYNACAST_HOLD * 2), None);
        assert_eq!(d.decide(1, 2, t0 + DYNACAST_HOLD * 2), None);
        assert_eq!(d.decide(0, 2, t0 + DYNACAST_HOLD * 3), None);
    }

    #[test]
    fn a_probe_pads_towards_its_target_and_stops_on_overuse_or_time() {
        let t0 = Instant::now();
        let mut b = SendBwe::new(t0);
        b.media_bps = 400_000;
        b.active = true;
        b.plan_probe(Some(1_000_000), t0);
        assert!(b.probing());
        // 100 ms at (target − media) in padding packets.
        let target = b.probe.unwrap().target_bps;
        assert!(target > 400_000 && target as f64 <= 600_000.0 * PROBE_MAX_STEP + 1.0);
        let mut sent = 0;
        for i in 1..=10 {
            sent += b.padding_due(t0 + Duration::from_millis(10 * i), MAX_PADDING_BURST);
        }
        let expected = (target - 400_000) as f64 / 8.0 * 0.1 / PADDING_LEN as f64;
        assert!(
            (sent as f64 - expected).abs() <= 2.0,
            "{sent} vs {expected}"
        );
        // It ends after PROBE_MAX and waits before the next one.
        b.plan_probe(Some(1_000_000), t0 + PROBE_MAX);
        assert!(!b.probing());
        b.plan_probe(Some(1_000_000), t0 + PROBE_MAX + Duration::from_millis(10));
        assert!(!b.probing(), "a failed probe backs off");
        b.plan_probe(Some(1_000_000), t0 + PROBE_MAX + PROBE_BACKOFF_FIRST);
        assert!(b.probing());
    }

    #[test]
    fn no_probe_right_after_a_cut_of_the_estimate() {
        let t0 = Instant::now();
        let mut b = SendBwe::new(t0);
        b.media_bps = 400_000;
        b.active = true;
        // Sending without feedback for over a second cuts the estimate.
        let sent = t0 + Duration::from_millis(1000);
        b.estimator.on_sent(0, 1200, sent);
        let cut = sent + Duration::from_millis(100);
        b.estimator.on_tick(cut);
        assert!(b.estimator.since_cut(cut).is_some());
        b.plan_probe(Some(1_000_000), cut + Duration::from_millis(250));
        assert!(!b.probing(), "a probe into the queue that caused the cut");
        b.plan_probe(Some(1_000_000), cut + PROBE_AFTER_CUT);
        assert!(b.probing());
    }

    #[test]
    fn no_probe_without_a_step_to_take() {
        let t0 = Instant::now();
        let mut b = SendBwe::new(t0);
        b.active = true;
        b.plan_probe(None, t0);
        assert!(!b.probing());
        assert_eq!(
            b.padding_due(t0 + Duration::from_millis(50), MAX_PADDING_BURST),
            0
        );
    }
}
