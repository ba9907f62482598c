//! A small stable-Rust fuzzer: seeded mutations of valid inputs, each run under `catch_unwind`.
//!
//! Every target runs a fixed number of inputs (`SFU_FUZZ_ITERS`, default below) or until its
//! time budget is spent, whichever comes first, with a seed from `SFU_FUZZ_SEED` (default: a
//! fixed one, so `make test` is reproducible; set another to explore). A panic or a broken
//! invariant fails the test and prints the seed and the input in hex, to add as a regression
//! case.
#![allow(dead_code)]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

const DEFAULT_ITERS: u64 = 1_000_000;
/// Each target stops after this long even if iterations remain (two shared cores).
const TIME_BUDGET: Duration = Duration::from_secs(5);
const MAX_INPUT: usize = 4096;

pub struct Fuzz {
    pub rng: StdRng,
    seed: u64,
    iters: u64,
}

impl Fuzz {
    /// A fuzzer for target `name` (the name varies the seed between targets).
    pub fn new(name: &str) -> Fuzz {
        let base = std::env::var("SFU_FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0x5EED_F022);
        let seed = name
            .bytes()
            .fold(base, |h, b| h.wrapping_mul(0x100_0000_01b3) ^ u64::from(b));
        let iters = std::env::var("SFU_FUZZ_ITERS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(DEFAULT_ITERS);
        Fuzz {
            rng: StdRng::seed_from_u64(seed),
            seed,
            iters,
        }
    }

    /// Runs `check` on mutations of the `seeds` (and on the seeds themselves). `check` panics
    /// (or asserts) on a bug; returns how many inputs ran.
    pub fn run(&mut self, seeds: &[Vec<u8>], mut check: impl FnMut(&[u8])) -> u64 {
        assert!(!seeds.is_empty());
        let started = Instant::now();
        let mut input = Vec::with_capacity(MAX_INPUT);
        let mut ran = 0;
        while ran < self.iters && started.elapsed() < TIME_BUDGET {
            input.clear();
            let seed = &seeds[self.rng.gen_range(0..seeds.len())];
            input.extend_from_slice(seed);
            if ran >= seeds.len() as u64 {
                let rounds = self.rng.gen_range(1..=4);
                for _ in 0..rounds {
                    mutate(&mut self.rng, &mut input, seeds);
                }
            }
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| check(&input))) {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panic!(
                    "input #{ran} (seed {}) failed: {what}\ninput ({} bytes): {}",
                    self.seed,
                    input.len(),
                    hex(&input)
                );
            }
            ran += 1;
        }
        eprintln!(
            "fuzz: {ran} inputs in {:.2} s (seed {})",
            started.elapsed().as_secs_f64(),
            self.seed
        );
        ran
    }
}

/// One random edit: flip bits, set interesting bytes, insert, delete, truncate, splice.
pub fn mutate(rng: &mut StdRng, input: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    const INTERESTING: [u8; 9] = [0, 1, 0x7f, 0x80, 0xff, 0x0f, 0x10, 0xbe, 0xde];
    let len = input.len();
    match rng.gen_range(0..8) {
        0 if len > 0 => {
            let i = rng.gen_range(0..len);
            input[i] ^= 1 << rng.gen_range(0..8);
        }
        1 if len > 0 => {
            let i = rng.gen_range(0..len);
            input[i] = INTERESTING[rng.gen_range(0..INTERESTING.len())];
        }
        2 if len > 0 => {
            let i = rng.gen_range(0..len);
            input[i] = rng.gen();
        }
        3 if len < MAX_INPUT => {
            let i = rng.gen_range(0..=len);
            let n = rng.gen_range(1..=16).min(MAX_INPUT - len);
            for _ in 0..n {
                input.insert(i, rng.gen());
            }
        }
        4 if len > 0 => {
            let i = rng.gen_range(0..len);
            let n = rng.gen_range(1..=16).min(len - i);
            input.drain(i..i + n);
        }
        5 => input.truncate(rng.gen_range(0..=len)),
        6 if len >= 2 => {
            // A 16-bit field (a length, mostly) set to an edge value.
            let i = rng.gen_range(0..len - 1);
            let v: u16 = [0, 1, 0xff, 0x100, 0x7fff, 0xffff, rng.gen()][rng.gen_range(0..7)];
            input[i..i + 2].copy_from_slice(&v.to_be_bytes());
        }
        _ => {
            // Splice the tail of another seed.
            let other = &seeds[rng.gen_range(0..seeds.len())];
            if !other.is_empty() {
                let from = rng.gen_range(0..other.len());
                let at = rng.gen_range(0..=len);
                input.truncate(at);
                let room = MAX_INPUT.saturating_sub(input.len());
                input.extend(other[from..].iter().take(room));
            }
        }
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}
