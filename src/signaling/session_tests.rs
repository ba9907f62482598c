//! The session's own decisions, without sockets or workers: health, join deadline,
//! coalescing keys.

use super::*;
use crate::channel::{mio_mailbox, task_mailbox};
use std::time::Duration;

struct Fixture {
    signaling: Signaling,
    /// Keeps the worker's job mailbox open (dropping it is the worker thread exiting).
    jobs: Option<Receiver<Job>>,
    stats: Arc<WorkerStats>,
    _poll: mio::Poll,
}

fn fixture(limits: SignalingLimits) -> Fixture {
    let poll = mio::Poll::new().unwrap();
    let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(0)).unwrap());
    let (_out_tx, out_rx) = mio_mailbox::<Outbound>(waker);
    let (jobs_tx, jobs_rx) = task_mailbox::<Job>();
    let stats = Arc::new(WorkerStats::new(0, None));
    let link = WorkerLink {
        jobs: jobs_tx,
        stats: stats.clone(),
    };
    Fixture {
        signaling: Signaling::new(vec![link], out_rx, limits, None),
        jobs: Some(jobs_rx),
        stats,
        _poll: poll,
    }
}

fn healthz(s: &mut Signaling) -> u16 {
    let req = HttpRequest {
        method: "GET".into(),
        path: "/healthz".into(),
        ..HttpRequest::default()
    };
    s.http(&req, &mut EdgeOut::default()).unwrap().status
}

#[test]
fn healthz_is_503_once_a_workers_thread_is_gone() {
    let mut f = fixture(SignalingLimits::default());
    assert_eq!(healthz(&mut f.signaling), 200);
    drop(f.jobs.take());
    assert_eq!(healthz(&mut f.signaling), 503);
}

#[test]
fn healthz_is_503_while_a_worker_heartbeat_stands_still_and_200_once_it_moves() {
    let mut f = fixture(SignalingLimits {
        worker_stall: Duration::from_millis(50),
        ..SignalingLimits::default()
    });
    std::thread::sleep(Duration::from_millis(80));
    f.signaling.tick(&mut EdgeOut::default());
    assert_eq!(healthz(&mut f.signaling), 503);
    f.stats
        .heartbeat
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    f.signaling.tick(&mut EdgeOut::default());
    assert_eq!(healthz(&mut f.signaling), 200);
}

#[test]
fn a_socket_out_of_a_room_past_the_deadline_is_closed_once() {
    let mut f = fixture(SignalingLimits {
        join_deadline: Duration::from_millis(30),
        ..SignalingLimits::default()
    });
    let mut out = EdgeOut::default();
    f.signaling
        .ws_open(7, "127.0.0.1:1".parse().unwrap(), None, &mut out);
    f.signaling.tick(&mut out);
    assert!(out.is_empty(), "closed before the deadline");
    std::thread::sleep(Duration::from_millis(40));
    f.signaling.tick(&mut out);
    f.signaling.tick(&mut out);
    let closes = format!("{out:?}").matches("Close(7, 1008").count();
    assert_eq!(closes, 1, "{out:?}");
}

#[test]
fn only_producer_state_notifications_are_coalesced_by_producer() {
    let mut out = EdgeOut::default();
    send_notification(&mut out, 1, "producer-paused", json!({"producerId": "p"}));
    send_notification(&mut out, 1, "producer-resumed", json!({"producerId": "p"}));
    send_notification(&mut out, 1, "new-producer", json!({"producerId": "p"}));
    let text = format!("{out:?}");
    assert_eq!(
        text.matches("Some(\"producer-state/p\")").count(),
        2,
        "{text}"
    );
    assert_eq!(text.matches("Send(1, None").count(), 1, "{text}");
}
