//! Per-socket rate limits: a token bucket per kind of work, and the abuse count that closes a
//! socket which keeps going after it was limited.

use std::time::Instant;

/// Refills `rate` tokens per second up to `burst`; each accepted event takes one.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// Starts full, so a fresh client can send its whole burst at once.
    pub fn new(rate: f64, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate: rate.max(0.0),
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }

    /// Takes a token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// True once the bucket has refilled completely: the client paused for a whole burst.
    pub fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }
}

/// The limits of one socket's requests and error notifications.
#[derive(Debug, Clone)]
pub struct SocketRates {
    pub requests: TokenBucket,
    pub errors: TokenBucket,
    /// Frames refused since the request bucket was last full.
    refused: u32,
    close_after: u32,
}

/// What to do with an incoming frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    /// Refuse it (answer `limit`, or drop an error notification).
    Refuse,
    /// The client kept going after being limited: close the socket.
    Close,
}

/// How many times its burst a socket may be refused (without pausing) before it is closed.
pub const ABUSE_BURSTS: u32 = 3;

impl SocketRates {
    pub fn new(
        request_rate: f64,
        request_burst: u32,
        error_rate: f64,
        error_burst: u32,
        now: Instant,
    ) -> Self {
        Self {
            requests: TokenBucket::new(request_rate, request_burst, now),
            errors: TokenBucket::new(error_rate, error_burst, now),
            refused: 0,
            close_after: request_burst.max(1).saturating_mul(ABUSE_BURSTS),
        }
    }

    /// A frame arrived (a request, or something that needs an error notification).
    pub fn frame(&mut self, now: Instant, needs_error: bool) -> Verdict {
        if self.refused > 0 && self.requests.is_full(now) {
            self.refused = 0;
        }
        let ok = self.requests.take(now) && (!needs_error || self.errors.take(now));
        if ok {
            return Verdict::Accept;
        }
        self.refused += 1;
        if self.refused >= self.close_after {
            Verdict::Close
        } else {
            Verdict::Refuse
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_is_accepted_then_the_rate_applies() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 5, t0);
        assert_eq!((0..8).filter(|_| b.take(t0)).count(), 5);
        assert!(!b.take(t0 + Duration::from_millis(50)));
        assert!(b.take(t0 + Duration::from_millis(110)));
        assert!(b.is_full(t0 + Duration::from_secs(10)));
    }

    #[test]
    fn a_socket_refused_three_bursts_in_a_row_is_closed() {
        let t0 = Instant::now();
        let mut r = SocketRates::new(1.0, 10, 1.0, 2, t0);
        let verdicts: Vec<Verdict> = (0..40).map(|_| r.frame(t0, false)).collect();
        assert_eq!(
            verdicts.iter().filter(|v| **v == Verdict::Accept).count(),
            10
        );
        let close_at = verdicts.iter().position(|v| *v == Verdict::Close);
        assert_eq!(close_at, Some(10 + 30 - 1));
    }

    #[test]
    fn pausing_for_a_full_refill_forgives_earlier_refusals() {
        let t0 = Instant::now();
        let mut r = SocketRates::new(100.0, 10, 100.0, 10, t0);
        for _ in 0..35 {
            r.frame(t0, false);
        }
        let later = t0 + Duration::from_secs(1);
        assert_eq!(r.frame(later, false), Verdict::Accept);
        for _ in 0..9 {
            r.frame(later, false);
        }
        assert_eq!(r.frame(later, false), Verdict::Refuse);
    }

    #[test]
    fn error_notifications_have_their_own_smaller_budget() {
        let t0 = Instant::now();
        let mut r = SocketRates::new(1.0, 100, 1.0, 3, t0);
        let accepted = (0..10)
            .filter(|_| r.frame(t0, true) == Verdict::Accept)
            .count();
        assert_eq!(accepted, 3);
        assert_eq!(r.frame(t0, false), Verdict::Accept);
    }
}
