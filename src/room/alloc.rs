//! Layer allocation for one recv transport: splits the transport's bandwidth estimate across
//! its video consumers and picks each one's simulcast (spatial) layer, or pauses it when even
//! its lowest layer does not fit. Pure: fed bit rates and the previous allocation, so the rules
//! are unit-tested without a network (room/adapt.rs applies the result).
//!
//! The rules, in order:
//! - consumers are served by priority (screen share, then the active speaker, then the rest),
//!   then in a stable order;
//! - first every consumer gets its lowest sending layer, if that fits; then, again by priority,
//!   each climbs as high as its preferred layer and the remaining budget allow;
//! - keeping the layer a consumer already has costs its bit rate; a layer above it (or resuming
//!   a paused consumer) must fit with [`UP_MARGIN`] to spare, so an estimate hovering at a
//!   layer's rate does not flip it up and down.

use std::time::{Duration, Instant};

/// Simulcast layers the allocator considers at most.
pub const MAX_LAYERS: usize = 4;
/// A layer above the current one must fit its bit rate times this.
pub const UP_MARGIN: f64 = 1.2;
/// Layers whose bit rate is not measured yet are assumed to need this (by index); a single
/// encoding (no simulcast) the middle value.
const ASSUMED_BPS: [u64; MAX_LAYERS] = [200_000, 500_000, 1_500_000, 2_500_000];

/// What one video consumer asks of the allocator.
#[derive(Debug, Clone, Copy)]
pub struct Demand {
    /// Higher is served first (see [`priority`]).
    pub priority: u8,
    /// The highest layer it may get (its preferred spatial layer, clamped to the producer's).
    pub max_layer: usize,
    /// The producer's layers (spatial) and the measured bit rate of each (0: not measured).
    pub layers: usize,
    pub bps: [u64; MAX_LAYERS],
    /// Bit `i` set: layer `i` is sending.
    pub active: u32,
    /// The layer it was given last time (None: paused for bandwidth, or new).
    pub current: Option<usize>,
}

/// Screen share first, then the active speaker's video, then everyone else.
pub fn priority(screen: bool, speaker: bool) -> u8 {
    match (screen, speaker) {
        (true, _) => 2,
        (false, true) => 1,
        _ => 0,
    }
}

impl Demand {
    /// The bit rate layer `l` needs (measured, else assumed).
    pub fn cost(&self, l: usize) -> u64 {
        match self.bps.get(l).copied() {
            Some(b) if b > 0 => b,
            _ if self.layers <= 1 => ASSUMED_BPS[1],
            _ => ASSUMED_BPS[l.min(MAX_LAYERS - 1)],
        }
    }

    fn is_active(&self, l: usize) -> bool {
        l < 32 && self.active & (1 << l) != 0
    }

    /// The sending layers it may get, lowest first.
    fn candidates(&self) -> impl Iterator<Item = usize> + '_ {
        let top = self.max_layer.min(self.layers.saturating_sub(1));
        (0..=top).filter(|&l| self.is_active(l))
    }

    /// What moving to `l` needs from the budget: the bit rate, with the margin when it is
    /// above what the consumer has.
    fn need(&self, l: usize) -> f64 {
        let bps = self.cost(l) as f64;
        match self.current {
            Some(c) if l <= c => bps,
            _ => bps * UP_MARGIN,
        }
    }
}

/// The allocation: per demand (same order) the layer it gets, or None (paused).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Allocation {
    pub layers: Vec<Option<usize>>,
    /// The bit rate the allocation uses.
    pub used_bps: u64,
    /// The total bit rate the next step up would need (some consumer below the layer it may
    /// have because the budget ran out): what a probe has to show the link can carry.
    pub next_step_bps: Option<u64>,
}

/// Allocates `budget_bps` across `demands`.
pub fn allocate(budget_bps: u64, demands: &[Demand]) -> Allocation {
    let mut order: Vec<usize> = (0..demands.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(demands[i].priority));
    let mut left = budget_bps as f64;
    let mut layers: Vec<Option<usize>> = vec![None; demands.len()];
    // What the first consumer the budget stopped would have needed beyond it.
    let mut blocked: Option<u64> = None;
    for &i in &order {
        let d = &demands[i];
        let Some(lowest) = d.candidates().next() else {
            continue;
        };
        if d.need(lowest) <= left {
            layers[i] = Some(lowest);
            left -= d.cost(lowest) as f64;
        } else {
            blocked.get_or_insert((d.need(lowest) - left).ceil() as u64);
        }
    }
    for &i in &order {
        let d = &demands[i];
        let Some(lowest) = layers[i] else {
            continue;
        };
        let mut at = lowest;
        for l in d.candidates().filter(|&l| l > lowest) {
            let need = d.need(l) - d.cost(at) as f64;
            if need > left {
                blocked.get_or_insert((need - left).ceil() as u64);
                break;
            }
            left += d.cost(at) as f64 - d.cost(l) as f64;
            at = l;
        }
        layers[i] = Some(at);
    }
    let used_bps = layers
        .iter()
        .zip(demands)
        .filter_map(|(l, d)| l.map(|l| d.cost(l)))
        .sum();
    Allocation {
        layers,
        used_bps,
        next_step_bps: blocked.map(|extra| budget_bps + extra),
    }
}

/// The bit rate of one stream, measured over windows of [`RateMeter::WINDOW`] and smoothed; it
/// keeps the last value when the stream stops (a paused layer's rate is still known when it
/// is wanted again).
#[derive(Debug, Clone, Copy, Default)]
pub struct RateMeter {
    window_start: Option<Instant>,
    bytes: u64,
    bps: u64,
}

impl RateMeter {
    pub const WINDOW: Duration = Duration::from_millis(500);

    pub fn add(&mut self, bytes: usize, now: Instant) {
        let start = *self.window_start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= Self::WINDOW {
            let fresh = self.bytes * 8 * 1_000_000 / elapsed.as_micros().max(1) as u64;
            // A window that ended long ago (the stream paused) says nothing about now.
            self.bps = if self.bps == 0 || elapsed > 4 * Self::WINDOW {
                fresh
            } else {
                (self.bps + fresh) / 2
            };
            self.window_start = Some(now);
            self.bytes = 0;
        }
        self.bytes += bytes as u64;
    }

    /// The last measured bit rate (0 until a window completed).
    pub fn bps(&self) -> u64 {
        self.bps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chromium's fake camera with three simulcast layers (shared/NOTES.md).
    const SIMULCAST: [u64; MAX_LAYERS] = [180_000, 340_000, 730_000, 0];

    fn camera(current: Option<usize>) -> Demand {
        Demand {
            priority: 0,
            max_layer: 2,
            layers: 3,
            bps: SIMULCAST,
            active: 0b111,
            current,
        }
    }

    #[test]
    fn an_unlimited_budget_gives_every_consumer_its_top_layer() {
        let a = allocate(10_000_000, &[camera(None), camera(Some(2))]);
        assert_eq!(a.layers, vec![Some(2), Some(2)]);
        assert_eq!(a.next_step_bps, None);
        assert_eq!(a.used_bps, 2 * 730_000);
    }

    #[test]
    fn a_600k_link_fits_the_middle_layer_and_says_what_the_top_needs() {
        let a = allocate(560_000, &[camera(Some(2))]);
        assert_eq!(a.layers, vec![Some(1)]);
        // Once there, climbing back to the top needs its rate with the margin.
        let a = allocate(560_000, &[camera(Some(1))]);
        assert_eq!(a.layers, vec![Some(1)]);
        let next = a.next_step_bps.unwrap();
        assert!(next >= (730_000.0 * UP_MARGIN) as u64 - 1, "{next}");
    }

    #[test]
    fn a_layer_is_kept_at_its_rate_but_entered_only_with_a_margin() {
        // 350k: keeps the middle layer it has, but a consumer on the lowest does not climb.
        assert_eq!(allocate(350_000, &[camera(Some(1))]).layers, vec![Some(1)]);
        assert_eq!(allocate(350_000, &[camera(Some(0))]).layers, vec![Some(0)]);
        assert_eq!(allocate(420_000, &[camera(Some(0))]).layers, vec![Some(1)]);
    }

    #[test]
    fn a_consumer_is_paused_when_not_even_the_lowest_layer_fits() {
        let a = allocate(100_000, &[camera(Some(0))]);
        assert_eq!(a.layers, vec![None]);
        assert!(a.next_step_bps.unwrap() >= 180_000);
        // Resuming needs the margin too.
        assert_eq!(allocate(190_000, &[camera(None)]).layers, vec![None]);
        assert_eq!(allocate(220_000, &[camera(None)]).layers, vec![Some(0)]);
    }

    #[test]
    fn screen_share_and_the_speaker_are_served_first() {
        let screen = Demand {
            priority: priority(true, false),
            max_layer: 0,
            layers: 1,
            bps: [900_000, 0, 0, 0],
            active: 1,
            current: Some(0),
        };
        let speaker = Demand {
            priority: priority(false, true),
            ..camera(Some(2))
        };
        // The screen keeps its 900k, the speaker gets the lowest layer (180k); what is left
        // (120k) does not fit the third one's lowest.
        let a = allocate(1_200_000, &[camera(Some(2)), speaker, screen]);
        assert_eq!(a.layers, vec![None, Some(0), Some(0)]);
        // With 1.5M all three get the lowest, then the speaker climbs first (+160k).
        let a = allocate(1_500_000, &[camera(Some(2)), speaker, screen]);
        assert_eq!(a.layers, vec![Some(0), Some(1), Some(0)]);
        assert!(a.used_bps <= 1_500_000);
    }

    #[test]
    fn every_consumer_gets_a_low_layer_before_anyone_climbs() {
        let a = allocate(800_000, &[camera(Some(2)), camera(Some(2))]);
        // 2 × 180k first; then the first climbs to the middle (+160k); the top would need 730k.
        assert_eq!(a.layers, vec![Some(1), Some(1)]);
    }

    #[test]
    fn the_preferred_layer_caps_the_allocation_and_inactive_layers_are_skipped() {
        let small = Demand {
            max_layer: 0,
            ..camera(Some(0))
        };
        assert_eq!(allocate(10_000_000, &[small]).layers, vec![Some(0)]);
        let no_top = Demand {
            active: 0b011,
            ..camera(Some(1))
        };
        assert_eq!(allocate(10_000_000, &[no_top]).layers, vec![Some(1)]);
        let nothing = Demand {
            active: 0,
            ..camera(None)
        };
        assert_eq!(allocate(10_000_000, &[nothing]).layers, vec![None]);
    }

    #[test]
    fn unmeasured_layers_are_assumed_to_need_typical_rates() {
        let fresh = Demand {
            bps: [0; MAX_LAYERS],
            ..camera(None)
        };
        assert_eq!(allocate(700_000, &[fresh]).layers, vec![Some(1)]);
        let single = Demand {
            layers: 1,
            max_layer: 0,
            active: 1,
            ..fresh
        };
        assert_eq!(single.cost(0), 500_000);
    }

    #[test]
    fn the_rate_meter_measures_and_remembers() {
        let t0 = Instant::now();
        let mut m = RateMeter::default();
        // 1,000 bytes every 10 ms: 800 kbit/s.
        for i in 0..200 {
            m.add(1000, t0 + Duration::from_millis(10 * i));
        }
        let bps = m.bps();
        assert!((760_000..=840_000).contains(&bps), "{bps}");
        // Still known after the stream stopped.
        assert_eq!(m.bps(), bps);
    }
}
