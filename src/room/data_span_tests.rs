//! Data channels in a room spanning workers (room/data.rs): data producers are announced to,
//! listed and consumable on every worker, their messages piped once per other worker, and
//! their piped copies go when they close or their peer leaves.

use super::*;
use crate::signaling::protocol::SctpStreamParameters as WireStream;

fn sctp_transport(c: &mut Cluster, client: &Client, direction: Direction) -> String {
    let answer = c.ok(
        client,
        Request::CreateTransport {
            direction,
            sctp: true,
        },
    );
    answer["id"].as_str().expect("transport id").to_string()
}

fn produce_data(c: &mut Cluster, client: &Client, transport: &str) -> String {
    let answer = c.ok(
        client,
        Request::ProduceData {
            transport_id: transport.to_string(),
            sctp_stream_parameters: WireStream {
                stream_id: 0,
                ordered: Some(true),
                max_packet_life_time: None,
                max_retransmits: None,
            },
            label: "chat".into(),
            protocol: String::new(),
        },
    );
    answer["dataProducerId"].as_str().expect("id").to_string()
}

fn data_producer_ids(c: &Cluster, w: usize) -> Vec<String> {
    let mut ids: Vec<String> = c
        .core(w)
        .routers
        .get(ROOM)
        .map(|r| {
            r.data
                .producers
                .values()
                .map(|p| p.id.to_string())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

#[test]
fn a_data_producer_reaches_peers_on_the_other_worker_and_its_messages_are_piped_there() {
    let mut c = Cluster::new(2);
    let (a, b) = two_peers(&mut c);
    let send_a = sctp_transport(&mut c, &a, Direction::Send);
    let dp = produce_data(&mut c, &a, &send_a);
    // B, on worker 1, hears of it and can consume it.
    let notes = c.notes(&b);
    assert!(
        notes.iter().any(|(w, m, d)| *w == 1
            && *m == "new-data-producer"
            && d["dataProducerId"] == dp.as_str()),
        "{notes:?}"
    );
    let recv_b = sctp_transport(&mut c, &b, Direction::Recv);
    let consumed = c.ok(
        &b,
        Request::ConsumeData {
            transport_id: recv_b,
            data_producer_id: dp.clone(),
        },
    );
    assert_eq!(consumed["dataProducerId"], dp.as_str());
    // Counted once, on the worker that owns it.
    assert_eq!(c.workers[0].stats.get(Counted::DataProducer), 1);
    assert_eq!(c.workers[1].stats.get(Counted::DataProducer), 0);

    // A message on A's stream goes to worker 1 once.
    let core = &mut c.workers[0].core;
    let tkey = core.routers[ROOM].peer("peer-a").unwrap().transports[&send_a];
    let router = core.routers.get_mut(ROOM).unwrap();
    router.on_data_message(
        &core.env,
        tkey,
        crate::rtc::sctp::SctpMessage {
            stream_id: 0,
            ppid: crate::rtc::sctp::PPID_STRING,
            data: bytes::Bytes::from_static(b"hello"),
        },
    );
    assert_eq!(c.pending(1), 1, "one DataMessage for worker 1");
    c.pump();

    // A later joiner on worker 1 gets it listed in join-room.
    let (carol, answer) = c.join(0, "carol", 1);
    assert_eq!(
        answer["dataProducers"][0]["dataProducerId"],
        dp.as_str(),
        "{answer}"
    );
    c.notes(&carol);

    // Closing it closes the piped copy and B's data consumer.
    c.ok(
        &a,
        Request::CloseDataProducer {
            data_producer_id: dp.clone(),
        },
    );
    let methods: Vec<&str> = c.notes(&b).iter().map(|(_, m, _)| *m).collect();
    assert!(methods.contains(&"data-consumer-closed"), "{methods:?}");
    assert!(data_producer_ids(&c, 1).is_empty());
    assert_eq!(c.workers[1].stats.get(Counted::DataConsumer), 0);
}

#[test]
fn a_new_satellite_learns_existing_data_producers_and_a_leaving_peer_takes_its_copies() {
    let mut c = Cluster::new(2);
    let (a, _) = c.join(0, "a", 0);
    let send_a = sctp_transport(&mut c, &a, Direction::Send);
    let dp = produce_data(&mut c, &a, &send_a);
    // Worker 1 becomes a satellite only now; B's join answer lists A's data producer.
    let (b, answer) = c.join(0, "b", 1);
    assert_eq!(
        answer["dataProducers"][0]["dataProducerId"],
        dp.as_str(),
        "{answer}"
    );
    assert_eq!(data_producer_ids(&c, 1), vec![dp.clone()]);
    // B's own data producer on worker 1 reaches A on the home.
    let send_b = sctp_transport(&mut c, &b, Direction::Send);
    let dpb = produce_data(&mut c, &b, &send_b);
    assert!(c
        .notes(&a)
        .iter()
        .any(|(_, m, d)| *m == "new-data-producer" && d["dataProducerId"] == dpb.as_str()));
    // B leaves: its data producer's copy on the home goes too.
    c.ok(&b, Request::LeaveRoom);
    assert_eq!(data_producer_ids(&c, 0), vec![dp]);
}
