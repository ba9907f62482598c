use super::*;
use crate::rtc::twcc::TwccRecorder;
use std::collections::VecDeque;

const PACKET: usize = 1200;
const STEP_US: i64 = 5_000;
const FEEDBACK_US: i64 = 100_000;

/// A sender pacing at the estimate through a bottleneck (a FIFO of `capacity_bps` that drops
/// what would wait longer than `queue_limit_us`), `base_delay_us` one way, and a receiver that
/// sends transport-cc feedback every 100 ms.
struct Sim {
    est: Estimator,
    t0: Instant,
    now_us: i64,
    seq: u16,
    credit_bits: f64,
    capacity_bps: f64,
    base_delay_us: i64,
    queue_limit_us: i64,
    free_at_us: i64,
    /// Drop this share of packets on top of the queue (deterministic).
    loss: f64,
    loss_acc: f64,
    feedback: bool,
    next_feedback_us: i64,
    /// (seq, send µs, arrival µs or None) not yet reported.
    in_flight: VecDeque<(u16, i64, Option<i64>)>,
    fb: Vec<(u16, Option<i64>)>,
    max_queue_us: i64,
    /// Send at this rate instead of the estimate (media that does not follow it at once).
    send_bps: Option<f64>,
    /// Probe padding sent on top, and its credit.
    pad_bps: f64,
    pad_credit_bits: f64,
}

impl Sim {
    fn new(initial_bps: u64, capacity_bps: f64) -> Self {
        let t0 = Instant::now();
        Self {
            est: Estimator::new(
                BweConfig {
                    initial_bps,
                    min_bps: 50_000,
                    max_bps: 5_000_000,
                },
                t0,
            ),
            t0,
            now_us: 0,
            seq: 0,
            credit_bits: 0.0,
            capacity_bps,
            base_delay_us: 20_000,
            queue_limit_us: 300_000,
            free_at_us: 0,
            loss: 0.0,
            loss_acc: 0.0,
            feedback: true,
            next_feedback_us: FEEDBACK_US,
            in_flight: VecDeque::new(),
            fb: Vec::new(),
            max_queue_us: 0,
            send_bps: None,
            pad_bps: 0.0,
            pad_credit_bits: 0.0,
        }
    }

    fn at(&self, us: i64) -> Instant {
        self.t0 + Duration::from_micros(us as u64)
    }

    fn step(&mut self) {
        self.now_us += STEP_US;
        let now = self.at(self.now_us);
        let rate = self.send_bps.unwrap_or(self.est.estimate_bps() as f64);
        self.credit_bits += rate * STEP_US as f64 / 1e6;
        self.pad_credit_bits += self.pad_bps * STEP_US as f64 / 1e6;
        loop {
            let padding = if self.credit_bits >= (PACKET * 8) as f64 {
                self.credit_bits -= (PACKET * 8) as f64;
                false
            } else if self.pad_credit_bits >= (PACKET * 8) as f64 {
                self.pad_credit_bits -= (PACKET * 8) as f64;
                true
            } else {
                break;
            };
            self.seq = self.seq.wrapping_add(1);
            if padding {
                self.est.on_sent_padding(self.seq, PACKET, now);
            } else {
                self.est.on_sent(self.seq, PACKET, now);
            }
            let queue = (self.free_at_us - self.now_us).max(0);
            self.max_queue_us = self.max_queue_us.max(queue);
            self.loss_acc += self.loss;
            let arrival = if queue > self.queue_limit_us || self.loss_acc >= 1.0 {
                if self.loss_acc >= 1.0 {
                    self.loss_acc -= 1.0;
                }
                None
            } else {
                let done = self.free_at_us.max(self.now_us)
                    + (PACKET as f64 * 8.0 * 1e6 / self.capacity_bps) as i64;
                self.free_at_us = done;
                Some(done + self.base_delay_us)
            };
            self.in_flight.push_back((self.seq, self.now_us, arrival));
        }
        if self.now_us >= self.next_feedback_us {
            self.next_feedback_us += FEEDBACK_US;
            if self.feedback {
                self.send_feedback(now);
            }
        }
        self.est.on_tick(now);
    }

    /// Everything that arrived by now (and the losses before it), fed back after one base delay.
    fn send_feedback(&mut self, now: Instant) {
        self.fb.clear();
        while let Some(&(seq, sent, arrival)) = self.in_flight.front() {
            let ready = match arrival {
                Some(a) => a <= self.now_us,
                None => sent + self.base_delay_us <= self.now_us,
            };
            if !ready {
                break;
            }
            self.fb.push((seq, arrival));
            self.in_flight.pop_front();
        }
        let fb = std::mem::take(&mut self.fb);
        self.est
            .on_feedback(&fb, now + Duration::from_micros(self.base_delay_us as u64));
        self.fb = fb;
    }

    fn run(&mut self, secs: f64) {
        let until = self.now_us + (secs * 1e6) as i64;
        while self.now_us < until {
            self.step();
        }
    }

    /// Runs `secs`, sampling the estimate every 100 ms.
    fn samples(&mut self, secs: f64) -> Vec<u64> {
        let mut out = Vec::new();
        let until = self.now_us + (secs * 1e6) as i64;
        while self.now_us < until {
            self.step();
            if self.now_us % 100_000 == 0 {
                out.push(self.est.estimate_bps());
            }
        }
        out
    }
}

#[test]
fn steady_link_settles_near_its_capacity_without_a_standing_queue() {
    let mut sim = Sim::new(300_000, 2_000_000.0);
    sim.run(20.0);
    sim.max_queue_us = 0;
    let late = sim.samples(20.0);
    let min = *late.iter().min().unwrap();
    let max = *late.iter().max().unwrap();
    assert!(
        min >= 1_200_000,
        "fell to {min} on a 2 Mbit/s link: {late:?}"
    );
    assert!(
        max <= 2_400_000,
        "rose to {max} on a 2 Mbit/s link: {late:?}"
    );
    assert!(
        sim.max_queue_us < 250_000,
        "queue of {} ms built up",
        sim.max_queue_us / 1000
    );
}

#[test]
fn ramp_of_capacity_is_followed_up() {
    let mut sim = Sim::new(300_000, 500_000.0);
    let mut worst_over = 0.0f64;
    for i in 0..300 {
        sim.capacity_bps = 500_000.0 + 3_500_000.0 * f64::from(i) / 300.0;
        sim.run(0.1);
        if i > 50 {
            worst_over = worst_over.max(sim.est.estimate_bps() as f64 / sim.capacity_bps);
        }
    }
    let end = sim.est.estimate_bps();
    assert!(
        end >= 2_500_000,
        "only {end} at the end of a ramp to 4 Mbit/s"
    );
    assert!(worst_over <= 1.4, "estimate {worst_over:.2}× the capacity");
}

#[test]
fn sudden_drop_is_followed_within_two_seconds_and_it_does_not_climb_back_while_limited() {
    let mut sim = Sim::new(1_000_000, 3_000_000.0);
    sim.run(20.0);
    let before = sim.est.estimate_bps();
    assert!(before >= 2_000_000, "{before} before the drop");
    sim.capacity_bps = 600_000.0;
    sim.run(2.0);
    let after = sim.est.estimate_bps();
    assert!(
        after <= 720_000,
        "still {after} 2 s after the link fell to 600 kbit/s"
    );
    let limited = sim.samples(10.0);
    let max = *limited.iter().max().unwrap();
    let min = *limited.iter().min().unwrap();
    assert!(
        max <= 800_000,
        "climbed to {max} while limited to 600 kbit/s: {limited:?}"
    );
    assert!(
        min >= 250_000,
        "fell to {min} on a 600 kbit/s link: {limited:?}"
    );
}

#[test]
fn a_sender_slow_to_follow_a_cut_does_not_drive_the_estimate_below_the_link() {
    // A subscriber's link falls to 600 kbit/s while we forward a 800 kbit/s layer; the lower
    // layer's key frame takes 1.5 s to come, then 380 kbit/s flow. The queue overflows and
    // the overuse lasts the whole time, but the link kept delivering 600 kbit/s: the
    // estimate stays near that (a lower layer that fits is not given up too).
    let mut sim = Sim::new(1_500_000, 3_000_000.0);
    sim.run(10.0);
    sim.capacity_bps = 600_000.0;
    sim.send_bps = Some(800_000.0);
    let slow = sim.samples(1.5);
    sim.send_bps = Some(380_000.0);
    let after = sim.samples(3.0);
    let min = *slow.iter().chain(&after).min().unwrap();
    assert!(
        min >= 450_000,
        "fell to {min} on a link that delivered 600 kbit/s: {slow:?} then {after:?}"
    );
    assert!(
        *after.last().unwrap() <= 720_000,
        "above the link after the queue drained: {after:?}"
    );
}

#[test]
fn failed_probes_do_not_let_an_app_limited_estimate_creep_above_the_link() {
    // 170 kbit/s of media on a 400 kbit/s link; every 4 s a probe pads 200 kbit/s on top for
    // 0.5 s (short of its target: a failure). The padding arrives and is acknowledged, but the
    // estimate may only grow to what the media uses, so it never climbs past the link (and
    // a layer that does not fit is never allocated without a successful probe).
    let mut sim = Sim::new(300_000, 400_000.0);
    sim.send_bps = Some(170_000.0);
    let mut max = 0;
    for _ in 0..8 {
        sim.pad_bps = 200_000.0;
        max = max.max(*sim.samples(0.5).iter().max().unwrap());
        sim.pad_bps = 0.0;
        max = max.max(*sim.samples(3.5).iter().max().unwrap());
    }
    assert!(
        max <= 400_000,
        "the estimate reached {max} on a 400 kbit/s link"
    );
}

#[test]
fn loss_bursts_cut_the_estimate_and_it_recovers_after() {
    let mut sim = Sim::new(1_000_000, 20_000_000.0);
    sim.run(15.0);
    let before = sim.est.estimate_bps();
    assert!(
        before >= 4_000_000,
        "{before}: should reach the 5 Mbit/s cap on a fast link"
    );
    sim.loss = 0.25;
    sim.run(2.0);
    let during = sim.est.estimate_bps();
    assert!(
        (during as f64) <= 0.7 * before as f64,
        "25 % loss for 2 s: {before} -> {during}"
    );
    sim.loss = 0.0;
    sim.run(15.0);
    let after = sim.est.estimate_bps();
    assert!(
        after >= 3_000_000,
        "only {after} 15 s after the loss burst ended"
    );
}

#[test]
fn without_feedback_the_estimate_never_rises_and_falls_after_a_second() {
    let mut sim = Sim::new(500_000, 20_000_000.0);
    sim.run(3.0);
    let before = sim.est.estimate_bps();
    sim.feedback = false;
    let gap = sim.samples(3.0);
    assert!(
        gap.iter().all(|&e| e <= before),
        "rose without feedback: {gap:?}"
    );
    assert!(
        *gap.last().unwrap() < before,
        "no cut after 3 s without feedback: {before} -> {gap:?}"
    );
    // Feedback again (the packets of the gap count as lost or late): it rises again.
    sim.feedback = true;
    sim.in_flight.clear();
    let low = sim.est.estimate_bps();
    sim.run(5.0);
    assert!(sim.est.estimate_bps() > low, "no recovery after the gap");
}

#[test]
fn parses_the_feedback_the_recorder_builds() {
    let t0 = Instant::now();
    let mut rec = TwccRecorder::new(t0);
    let mut want = Vec::new();
    for seq in 65_500u16..65_535 {
        if seq % 7 == 3 {
            continue; // lost
        }
        // Spread out, with one long pause that needs a two-byte delta.
        let ms = u64::from(seq - 65_500) * 3 + if seq > 65_520 { 100 } else { 0 };
        rec.record(seq, t0 + Duration::from_millis(ms));
        want.push((seq, ms));
    }
    let mut packet = Vec::new();
    rec.build_feedback(1, 2, t0 + Duration::from_millis(200), &mut packet);
    let mut got = Vec::new();
    parse_feedback(&packet, &mut got).unwrap();
    let received: Vec<(u16, i64)> = got.iter().filter_map(|&(s, a)| a.map(|a| (s, a))).collect();
    assert_eq!(received.len(), want.len(), "{got:?}");
    let first = received[0].1;
    for ((seq, arrival), (want_seq, ms)) in received.iter().zip(&want) {
        assert_eq!(seq, want_seq);
        let rel = arrival - first;
        let want_rel = (*ms as i64 - want[0].1 as i64) * 1000;
        assert!(
            (rel - want_rel).abs() < 500,
            "{seq}: {rel} µs vs {want_rel}"
        );
    }
    let lost: Vec<u16> = got
        .iter()
        .filter(|(_, a)| a.is_none())
        .map(|(s, _)| *s)
        .collect();
    assert!(
        lost.iter().all(|s| s % 7 == 3) && !lost.is_empty(),
        "{lost:?}"
    );
}

#[test]
fn hostile_feedback_is_refused_without_panicking() {
    let mut out = Vec::new();
    assert_eq!(parse_feedback(&[], &mut out), Err(BweError::Malformed));
    // Chromium's feedback for one packet parses.
    let chromium = [
        0x8f, 0xcd, 0x00, 0x05, 0xfa, 0x17, 0xfa, 0x17, 0x43, 0x3, 0x2f, 0xa0, 0x0, 0x99, 0x0, 0x1,
        0x3d, 0xe8, 0x2, 0x17, 0x20, 0x1, 0x94, 0x1,
    ];
    parse_feedback(&chromium, &mut out).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, 0x99);
    assert!(out[0].1.is_some(), "{out:?}");
    let mut next = crate::test_util::xorshift(0x1234_5678);
    for len in 0..200usize {
        for _ in 0..50 {
            let mut p: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if p.len() >= 4 {
                p[0] = 0x8f;
                p[1] = 205;
                // Mostly a length that fits the bytes; sometimes one too short or too long.
                let words = match next() % 4 {
                    0 => next() as u16 % 8,
                    _ => ((p.len() / 4).saturating_sub(1)) as u16,
                };
                p[2..4].copy_from_slice(&words.to_be_bytes());
            }
            out.clear();
            let _ = parse_feedback(&p, &mut out);
            assert!(out.len() <= 65_535);
        }
    }
}
