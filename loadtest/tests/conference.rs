//! `--conference` against the real server: every peer of every room publishes and consumes
//! every other peer (N × (N − 1) consumers per track and room), and the media arrives.

use clap::Parser;
use loadtest::probe::SfuProcess;
use loadtest::{run, steps, Args};

#[test]
fn conference_rooms_consume_every_other_peer_and_the_media_arrives() {
    let server = SfuProcess::start(&[]);
    let url = server.url();
    let args = Args::parse_from([
        "loadtest",
        "--url",
        &url,
        "--conference",
        "3",
        "--rooms-sweep",
        "1,2",
        "--audio",
        "--duration",
        "1.5",
        "--warmup",
        "1",
        "--bitrate-kbps",
        "300",
    ]);
    let results = run(&args).expect("the run completes");
    assert_eq!(results.len(), 2);
    for (r, rooms) in results.iter().zip([1, 2]) {
        assert!(r.conference);
        assert_eq!(r.rooms, rooms);
        // 3 peers, each consuming the other two peers' video and audio.
        assert_eq!(r.consumers, rooms * 3 * 2 * 2, "{}", r.to_text());
        assert_eq!(r.silent_consumers, 0, "{}", r.to_text());
        assert!(r.loss_percent < 1.0, "{}", r.to_text());
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let stats = server.stats();
        if stats["peers"] == 0 && stats["consumers"] == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the peers did not leave after the run: {stats}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn conference_and_sweeps_combine_only_where_they_make_sense() {
    let parse = |extra: &[&str]| {
        let mut argv = vec!["loadtest"];
        argv.extend(extra);
        steps(&Args::parse_from(argv))
    };
    let s = parse(&["--conference", "4", "--rooms-sweep", "5,10"]).unwrap();
    assert_eq!(
        s.iter()
            .map(|s| (s.rooms, s.subscribers))
            .collect::<Vec<_>>(),
        [(5, 4), (10, 4)]
    );
    assert!(parse(&["--conference", "4", "--sweep", "5"]).is_err());
    assert!(parse(&["--conference", "1"]).is_err());
    assert!(parse(&["--sweep", "1", "--rooms-sweep", "2"]).is_err());
    let s = parse(&["--rooms", "3", "--sweep", "10,20"]).unwrap();
    assert_eq!(
        s.iter()
            .map(|s| (s.rooms, s.subscribers))
            .collect::<Vec<_>>(),
        [(3, 10), (3, 20)]
    );
}
