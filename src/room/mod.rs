//! Rooms: routers, transports, producers, consumers (owned by one worker), and the
//! `ortc` rules that check and derive mediasoup-client parameter objects.

pub mod close;
pub mod consent;
pub mod consumer;
pub mod core;
pub mod limits;
pub mod media;
pub mod ortc;
pub mod outbox;
pub mod producer;
pub mod span;
pub mod tap;
pub mod transport;

/// Keys of the objects a worker owns (never reused within a worker).
pub type TKey = u64;
pub type PKey = u64;
pub type CKey = u64;
