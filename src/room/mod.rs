//! Rooms: routers, transports, producers, consumers (owned by one worker), and the
//! `ortc` rules that check and derive mediasoup-client parameter objects.

pub mod ortc;
