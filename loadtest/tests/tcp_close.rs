//! An ICE-TCP connection that ends takes its transport with it at once (the client is told
//! `transport-closed` and can reconnect), instead of leaving it until the 30 s consent timeout.

use loadtest::probe::SfuProcess;
use loadtest::signaling::Signaling;
use loadtest::transport::{open_tcp, DtlsClient};
use serde_json::json;
use std::time::{Duration, Instant};

fn transports(server: &SfuProcess) -> u64 {
    server.stats()["transports"].as_u64().unwrap()
}

#[test]
fn a_closed_ice_tcp_connection_closes_its_transport_within_seconds() {
    let server = SfuProcess::start(&[]);
    let dtls = DtlsClient::start().unwrap();
    let mut sig = Signaling::connect(&server.url()).unwrap();
    sig.request("join-room", json!({"roomId": "tcp-close"}))
        .unwrap();
    let t = open_tcp(&mut sig, "recv", &dtls).expect("a transport over ICE-TCP");
    assert_eq!(transports(&server), 1);
    // The connection ends without a DTLS close_notify (a client whose network went away).
    t.socket.stream.shutdown(std::net::Shutdown::Both).unwrap();
    let started = Instant::now();
    while transports(&server) != 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the transport outlived its ICE-TCP connection"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The peer stays in the room (only its transport went) and can open a new one.
    assert_eq!(server.stats()["peers"], 1);
    let again = open_tcp(&mut sig, "recv", &dtls).expect("a new transport");
    assert_eq!(transports(&server), 1);
    drop((t, again));
}
