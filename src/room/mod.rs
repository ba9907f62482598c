//! Rooms: one [`Router`](router::Router) per room on a worker owns its peers, transports,
//! producers, consumers and taps; [`WorkerCore`](core::WorkerCore) holds the routers, the
//! index that finds them and the environment they share. `api` is the typed contract with the
//! signaling thread, `ortc` the rules that check and derive mediasoup-client parameter
//! objects, `forward` the per-packet forwarding decision. See docs/architecture.md.

pub mod adapt;
pub mod alloc;
pub mod api;
pub mod close;
pub mod consent;
pub mod consumer;
pub mod core;
pub mod data;
pub mod demux;
pub mod directory;
pub mod env;
pub mod fanout;
pub mod forward;
pub mod limits;
pub mod mesh;
pub mod ortc;
pub mod outbox;
pub mod packet;
pub mod piping;
pub mod producer;
pub mod remote;
pub mod requests;
pub mod router;
pub mod speaker;
pub mod tap;
pub mod transport;
pub mod turn;

#[cfg(test)]
mod rid_learning_tests;
#[cfg(test)]
mod span_tests;
#[cfg(test)]
pub(crate) mod test_peek;

/// Keys of the objects a worker owns (never reused within a worker).
pub type TKey = u64;
pub type PKey = u64;
pub type CKey = u64;
