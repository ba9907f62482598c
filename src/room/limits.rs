//! What one peer may make a worker hold or send: object caps per peer, the outgoing bit rate
//! towards a peer (a token bucket shared by the peer's transports), and the worker-wide budget
//! for retransmission caches (a lease per cache, returned when the cache is dropped).
//!
//! These bound amplification: without them one peer could consume a producer a thousand times,
//! or pin caches for many encodings, and the worker would pay for it on every packet.

use crate::rtc::nack::{RtpCache, CACHE_SLOTS, CACHE_SLOT_LEN};
use crate::stats::WorkerStats;
use std::cell::Cell;
use std::ops::{Deref, DerefMut};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The limits of one worker (from src/config.rs; see docs/operations.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaLimits {
    pub max_transports_per_peer: usize,
    pub max_producers_per_peer: usize,
    pub max_consumers_per_peer: usize,
    /// Bits per second sent towards one peer (all its transports together); 0: no cap.
    pub peer_egress_bitrate: u64,
    /// Bytes of retransmission caches one worker may hold.
    pub retransmit_cache_budget: u64,
}

impl Default for MediaLimits {
    fn default() -> Self {
        Self {
            // A send and a recv transport per peer is the norm; a few ICE restarts' worth more.
            max_transports_per_peer: 8,
            // Camera, microphone, screen and screen audio, twice over.
            max_producers_per_peer: 8,
            // A 50-peer conference needs 49 × 4 at most.
            max_consumers_per_peer: 500,
            peer_egress_bitrate: 50_000_000,
            retransmit_cache_budget: 256 << 20,
        }
    }
}

/// How much burst the egress bucket allows: a key frame of a high layer to every consumer of
/// a peer arrives within a few tens of milliseconds.
const EGRESS_BURST: Duration = Duration::from_millis(250);
/// Never less than this, so a low cap still passes one large packet.
const MIN_EGRESS_BURST_BYTES: f64 = 64.0 * 1024.0;

/// A token bucket of bytes; `Copy` so it fits in a `Cell` shared by a peer's transports.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    /// Bytes per second; 0: unlimited.
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Option<Instant>,
}

impl TokenBucket {
    pub fn new(bits_per_second: u64) -> Self {
        let rate = bits_per_second as f64 / 8.0;
        let burst = (rate * EGRESS_BURST.as_secs_f64()).max(MIN_EGRESS_BURST_BYTES);
        Self {
            rate,
            burst,
            tokens: burst,
            at: None,
        }
    }

    /// Takes `bytes` if the bucket holds them; false: the packet exceeds the rate.
    pub fn take(&mut self, bytes: usize, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        if let Some(at) = self.at {
            let dt = now.saturating_duration_since(at).as_secs_f64();
            self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        }
        self.at = Some(now);
        let need = bytes as f64;
        if self.tokens >= need {
            self.tokens -= need;
            true
        } else {
            false
        }
    }
}

/// One peer's egress bucket, shared (single-threaded) by its transports.
pub type SharedBucket = Rc<Cell<TokenBucket>>;

pub fn shared_bucket(bits_per_second: u64) -> SharedBucket {
    Rc::new(Cell::new(TokenBucket::new(bits_per_second)))
}

/// Takes `bytes` from a shared bucket.
pub fn take_shared(bucket: &SharedBucket, bytes: usize, now: Instant) -> bool {
    let mut b = bucket.get();
    let ok = b.take(bytes, now);
    bucket.set(b);
    ok
}

/// Bytes one retransmission cache holds (allocated at once).
pub const CACHE_BYTES: u64 = (CACHE_SLOTS * CACHE_SLOT_LEN + CACHE_SLOTS * 4) as u64;

/// The worker-wide budget for retransmission caches. The bytes in use live in the worker's
/// stats (so `/api/stats` shows them); only this worker's thread changes them.
#[derive(Clone)]
pub struct CacheBudget {
    limit: u64,
    stats: Arc<WorkerStats>,
}

/// A cache's share of the budget, given back when it is dropped (with its cache, whatever
/// path drops it: a close, an eviction, a worker shutting down).
pub struct CacheLease {
    bytes: u64,
    stats: Arc<WorkerStats>,
}

impl Drop for CacheLease {
    fn drop(&mut self) {
        self.stats
            .retransmit_cache_bytes
            .fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// A retransmission cache together with its share of the budget: one never exists without
/// the other, so the bytes counted are the bytes held.
pub struct LeasedCache {
    cache: Box<RtpCache>,
    _lease: CacheLease,
}

impl Deref for LeasedCache {
    type Target = RtpCache;
    fn deref(&self) -> &RtpCache {
        &self.cache
    }
}

impl DerefMut for LeasedCache {
    fn deref_mut(&mut self) -> &mut RtpCache {
        &mut self.cache
    }
}

impl CacheBudget {
    pub fn new(limit: u64, stats: Arc<WorkerStats>) -> Self {
        Self { limit, stats }
    }

    /// A new cache, if the budget has room for it (a refusal is counted).
    pub fn cache(&self) -> Option<LeasedCache> {
        let lease = self.lease()?;
        Some(LeasedCache {
            cache: Box::default(),
            _lease: lease,
        })
    }

    /// A lease for one more cache, or None (counted) when the budget is spent.
    pub fn lease(&self) -> Option<CacheLease> {
        let used = &self.stats.retransmit_cache_bytes;
        // One writer (this worker's thread): load then add cannot race.
        if used.load(Ordering::Relaxed) + CACHE_BYTES > self.limit {
            self.stats
                .retransmit_cache_denied
                .fetch_add(1, Ordering::Relaxed);
            return None;
        }
        used.fetch_add(CACHE_BYTES, Ordering::Relaxed);
        Some(CacheLease {
            bytes: CACHE_BYTES,
            stats: self.stats.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_egress_bucket_passes_its_rate_and_drops_the_excess() {
        // 8 Mbit/s = 1 MB/s; the burst is 250 ms of it, 250 KB.
        let mut b = TokenBucket::new(8_000_000);
        let t0 = Instant::now();
        let mut passed = 0usize;
        // 2 s of offered load at 4 MB/s in 1000-byte packets, 1 ms apart (4 per ms).
        for ms in 0..2000u64 {
            let now = t0 + Duration::from_millis(ms);
            for _ in 0..4 {
                if b.take(1000, now) {
                    passed += 1000;
                }
            }
        }
        // Rate × time + the initial burst, within a packet per step.
        let expected = 1_000_000.0 * 2.0 + 250_000.0;
        assert!(
            (passed as f64 - expected).abs() < 10_000.0,
            "passed {passed}, expected about {expected}"
        );
    }

    #[test]
    fn a_zero_rate_means_no_cap() {
        let mut b = TokenBucket::new(0);
        let now = Instant::now();
        assert!((0..10_000).all(|_| b.take(1500, now)));
    }

    #[test]
    fn the_cache_budget_refuses_past_its_limit_and_gets_leases_back_on_drop() {
        let stats = Arc::new(WorkerStats::new(0, None));
        let budget = CacheBudget::new(3 * CACHE_BYTES, stats.clone());
        let leases: Vec<_> = (0..3).map(|_| budget.lease().expect("fits")).collect();
        assert!(budget.lease().is_none());
        assert_eq!(stats.retransmit_cache_denied.load(Ordering::Relaxed), 1);
        assert_eq!(
            stats.retransmit_cache_bytes.load(Ordering::Relaxed),
            3 * CACHE_BYTES
        );
        drop(leases);
        assert_eq!(stats.retransmit_cache_bytes.load(Ordering::Relaxed), 0);
        assert!(budget.lease().is_some());
    }
}
