//! Data-channel commands on a real worker core: produce-data, consume-data,
//! close-data-producer, their notices, the join-room listing, cascades and the live counters.

use crate::room::api::{
    Answer, ApiError, Command, ErrorCode, Job, JobKind, Notice, Outbound, SctpStreamParameters,
    TransportDirection,
};
use crate::room::core::WorkerCore;
use crate::rtc::sctp::Reliability;
use crate::stats::Counted;
use crate::testing::media::{worker, Harness};
use std::sync::Arc;
use std::time::Instant;

const ROOM: &str = "data-room";

struct Room {
    core: WorkerCore,
    harness: Harness,
    next_req: u32,
}

/// What one job produced: its response and the notices, by connection.
#[derive(Default)]
struct Out {
    response: Option<Result<Answer, ApiError>>,
    notices: Vec<(u64, Notice)>,
}

impl Room {
    fn new() -> Self {
        let (core, harness) = worker();
        Self {
            core,
            harness,
            next_req: 1,
        }
    }

    fn run(&mut self, conn: u64, peer: &str, kind: JobKind) -> Out {
        let job = Job {
            conn,
            room_id: Arc::from(ROOM),
            peer_id: Arc::from(peer),
            kind,
        };
        self.core.handle_job(job, Instant::now());
        let mut out = Out::default();
        while let Some(m) = self.harness.signaling.try_recv() {
            match m {
                Outbound::Response { result, .. } => out.response = Some(result),
                Outbound::Notify { conn, notice } => out.notices.push((conn, notice)),
                _ => {}
            }
        }
        out
    }

    /// Joins peer `conn` as "p<conn>".
    fn join(&mut self, conn: u64) -> Answer {
        let req_id = self.req();
        self.run(
            conn,
            &peer(conn),
            JobKind::Join {
                req_id,
                display_name: peer(conn),
                host: 0,
            },
        )
        .response
        .expect("a join answer")
        .expect("joined")
    }

    fn req(&mut self) -> u32 {
        self.next_req += 1;
        self.next_req
    }

    fn command(&mut self, conn: u64, command: Command) -> Out {
        let req_id = self.req();
        self.run(conn, &peer(conn), JobKind::Request { req_id, command })
    }

    fn ok(&mut self, conn: u64, command: Command) -> (Answer, Vec<(u64, Notice)>) {
        let out = self.command(conn, command);
        let answer = out.response.expect("a response").expect("success");
        (answer, out.notices)
    }

    fn err(&mut self, conn: u64, command: Command) -> ErrorCode {
        self.command(conn, command)
            .response
            .expect("a response")
            .expect_err("an error")
            .code
    }

    fn transport(&mut self, conn: u64, direction: TransportDirection, sctp: bool) -> String {
        match self
            .ok(conn, Command::CreateTransport { direction, sctp })
            .0
        {
            Answer::TransportCreated(t) => {
                assert_eq!(t.sctp, sctp, "sctpParameters only with sctp: true");
                t.id
            }
            other => panic!("not a transport: {other:?}"),
        }
    }

    fn count(&self, c: Counted) -> usize {
        self.core.env.stats.get(c)
    }
}

fn produce_data(transport_id: &str, stream_id: u16) -> Command {
    Command::ProduceData {
        transport_id: transport_id.to_owned(),
        stream: SctpStreamParameters {
            stream_id,
            reliability: Reliability::default(),
        },
        label: "chat".into(),
        protocol: "".into(),
    }
}

fn peer(conn: u64) -> String {
    format!("p{conn}")
}

fn produced(answer: Answer) -> String {
    match answer {
        Answer::DataProduced { data_producer_id } => data_producer_id,
        other => panic!("not produce-data's answer: {other:?}"),
    }
}

#[test]
fn produce_data_on_a_transport_without_sctp_is_invalid_state() {
    let mut r = Room::new();
    r.join(1);
    let t = r.transport(1, TransportDirection::Send, false);
    let cmd = produce_data(&t, 0);
    assert_eq!(r.err(1, cmd), ErrorCode::InvalidState);
    assert_eq!(r.count(Counted::DataProducer), 0);
}

#[test]
fn a_data_producer_is_announced_listed_and_consumed_on_a_stream_the_server_picks() {
    let mut r = Room::new();
    r.join(1);
    r.join(2);
    let send = r.transport(1, TransportDirection::Send, true);
    let cmd = produce_data(&send, 3);
    let (answer, notices) = r.ok(1, cmd);
    let dp = produced(answer);
    assert!(
        notices.iter().any(|(conn, n)| *conn == 2
            && matches!(n, Notice::NewDataProducer(s) if s.data_producer_id == dp && &*s.peer_id == "p1" && s.label == "chat")),
        "the other peer hears of it: {notices:?}"
    );
    assert!(!notices.iter().any(|(conn, _)| *conn == 1));
    let cmd = produce_data(&send, 3);
    assert_eq!(r.err(1, cmd), ErrorCode::BadRequest, "stream 3 is taken");

    // A later peer finds it in join-room and consumes it, twice on one transport.
    match r.join(3) {
        Answer::Joined(j) => {
            assert_eq!(j.data_producers.len(), 1);
            assert_eq!(j.data_producers[0].data_producer_id, dp);
        }
        other => panic!("{other:?}"),
    }
    let recv = r.transport(3, TransportDirection::Recv, true);
    let mut streams = Vec::new();
    for _ in 0..2 {
        let (answer, _) = r.ok(
            3,
            Command::ConsumeData {
                transport_id: recv.clone(),
                data_producer_id: dp.clone(),
            },
        );
        match answer {
            Answer::DataConsumed(c) => {
                assert_eq!(c.data_producer_id, dp);
                assert_eq!(c.label, "chat");
                assert!(c.stream.reliability.ordered);
                streams.push(c.stream.stream_id);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        streams,
        vec![0, 1],
        "the lowest free streams of the transport"
    );
    assert_eq!(r.count(Counted::DataProducer), 1);
    assert_eq!(r.count(Counted::DataConsumer), 2);
}

#[test]
fn unknown_or_foreign_ids_are_not_found() {
    let mut r = Room::new();
    r.join(1);
    r.join(2);
    let send = r.transport(1, TransportDirection::Send, true);
    let recv = r.transport(2, TransportDirection::Recv, true);
    let cmd = produce_data(&send, 0);
    let dp = produced(r.ok(1, cmd).0);
    let unknown = Command::ConsumeData {
        transport_id: recv.clone(),
        data_producer_id: "nope".into(),
    };
    assert_eq!(r.err(2, unknown), ErrorCode::NotFound);
    let foreign_transport = Command::ConsumeData {
        transport_id: send.clone(),
        data_producer_id: dp.clone(),
    };
    assert_eq!(r.err(2, foreign_transport), ErrorCode::NotFound);
    let foreign_close = Command::CloseDataProducer {
        data_producer_id: dp.clone(),
    };
    assert_eq!(r.err(2, foreign_close), ErrorCode::NotFound);
    let unknown_close = Command::CloseDataProducer {
        data_producer_id: "nope".into(),
    };
    assert_eq!(r.err(1, unknown_close), ErrorCode::NotFound);
    assert_eq!(r.count(Counted::DataProducer), 1);
}

#[test]
fn close_data_producer_closes_its_consumers_and_tells_everyone() {
    let mut r = Room::new();
    r.join(1);
    r.join(2);
    let send = r.transport(1, TransportDirection::Send, true);
    let recv = r.transport(2, TransportDirection::Recv, true);
    let cmd = produce_data(&send, 0);
    let dp = produced(r.ok(1, cmd).0);
    let dc = match r
        .ok(
            2,
            Command::ConsumeData {
                transport_id: recv,
                data_producer_id: dp.clone(),
            },
        )
        .0
    {
        Answer::DataConsumed(c) => c.data_consumer_id,
        other => panic!("{other:?}"),
    };
    let (_, notices) = r.ok(
        1,
        Command::CloseDataProducer {
            data_producer_id: dp.clone(),
        },
    );
    assert!(notices.contains(&(
        2,
        Notice::DataConsumerClosed {
            data_consumer_id: dc
        }
    )));
    assert!(notices.contains(&(
        2,
        Notice::DataProducerClosed {
            data_producer_id: dp.clone()
        }
    )));
    assert_eq!(r.count(Counted::DataProducer), 0);
    assert_eq!(r.count(Counted::DataConsumer), 0);
    let again = Command::CloseDataProducer {
        data_producer_id: dp,
    };
    assert_eq!(r.err(1, again), ErrorCode::NotFound);
}

#[test]
fn leaving_cascades_to_data_producers_and_consumers_and_the_counts_return_to_zero() {
    let mut r = Room::new();
    r.join(1);
    r.join(2);
    let send1 = r.transport(1, TransportDirection::Send, true);
    let recv1 = r.transport(1, TransportDirection::Recv, true);
    let send2 = r.transport(2, TransportDirection::Send, true);
    let recv2 = r.transport(2, TransportDirection::Recv, true);
    let cmd = produce_data(&send1, 0);
    let dp1 = produced(r.ok(1, cmd).0);
    let cmd = produce_data(&send2, 0);
    let dp2 = produced(r.ok(2, cmd).0);
    r.ok(
        2,
        Command::ConsumeData {
            transport_id: recv2,
            data_producer_id: dp1.clone(),
        },
    );
    r.ok(
        1,
        Command::ConsumeData {
            transport_id: recv1,
            data_producer_id: dp2,
        },
    );
    assert_eq!(r.count(Counted::DataProducer), 2);
    assert_eq!(r.count(Counted::DataConsumer), 2);
    let (_, notices) = r.ok(1, Command::LeaveRoom);
    assert!(notices.contains(&(
        2,
        Notice::DataProducerClosed {
            data_producer_id: dp1
        }
    )));
    assert!(notices
        .iter()
        .any(|(c, n)| *c == 2 && matches!(n, Notice::DataConsumerClosed { .. })));
    assert_eq!(r.count(Counted::DataProducer), 1);
    assert_eq!(r.count(Counted::DataConsumer), 0);
    r.ok(2, Command::LeaveRoom);
    assert_eq!(r.count(Counted::DataProducer), 0);
    assert_eq!(r.count(Counted::DataConsumer), 0);
    assert_eq!(r.count(Counted::Transport), 0);
}

#[test]
fn a_message_on_a_stream_without_a_data_producer_is_dropped() {
    let mut r = Room::new();
    r.join(1);
    let send = r.transport(1, TransportDirection::Send, true);
    let tkey = r.core.router(ROOM).unwrap().peer("p1").unwrap().transports[&send];
    let core = &mut r.core;
    let router = core.routers.get_mut(ROOM).unwrap();
    router.on_data_message(
        &core.env,
        tkey,
        crate::rtc::sctp::SctpMessage {
            stream_id: 9,
            ppid: crate::rtc::sctp::PPID_STRING,
            data: bytes::Bytes::from_static(b"hi"),
        },
    );
    assert_eq!(r.count(Counted::DataProducer), 0);
}

#[test]
fn data_producers_per_peer_are_capped() {
    let mut r = Room::new();
    r.join(1);
    let send = r.transport(1, TransportDirection::Send, true);
    for s in 0..super::MAX_DATA_PRODUCERS_PER_PEER as u16 {
        let cmd = produce_data(&send, s);
        r.ok(1, cmd);
    }
    let cmd = produce_data(&send, 999);
    assert_eq!(r.err(1, cmd), ErrorCode::Limit);
}
