//! The ICE-TCP framing path of `--tcp` (RFC 4571): what `FrameWriter` puts on a stream comes
//! out of `FrameReader` as the same packets, however the stream is split into reads, and a
//! writer that cannot write drops whole frames, never part of one.

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use loadtest::tcp::{FrameReader, FrameWriter, TcpLink};
use loadtest::transport::{tcp_candidate, udp_candidate};
use serde_json::json;

/// A stream that hands out `chunks` one per read, then end of stream.
struct Chunks(VecDeque<Vec<u8>>);

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(mut chunk) = self.0.pop_front() else {
            return Ok(0);
        };
        let n = chunk.len().min(buf.len());
        if n < chunk.len() {
            self.0.push_front(chunk.split_off(n));
        }
        buf[..n].copy_from_slice(&chunk[..n]);
        Ok(n)
    }
}

/// A non-blocking socket's behaviour: takes at most `per_write` bytes per call and `allow`
/// bytes in all, and every `block_every`-th call would block.
struct Stingy {
    written: Vec<u8>,
    per_write: usize,
    block_every: usize,
    calls: usize,
    allow: usize,
}

impl Stingy {
    fn new(per_write: usize, block_every: usize) -> Self {
        Self {
            written: Vec::new(),
            per_write,
            block_every,
            calls: 0,
            allow: usize::MAX,
        }
    }
}

impl Write for Stingy {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.calls += 1;
        if self.allow == 0 || (self.block_every > 0 && self.calls.is_multiple_of(self.block_every))
        {
            return Err(ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.per_write).min(self.allow);
        self.allow -= n;
        self.written.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn packets() -> Vec<Vec<u8>> {
    // A STUN-sized, a DTLS-sized, an MTU-sized and a one-byte packet, with distinct contents.
    [20usize, 133, 1200, 1, 1500, 96]
        .iter()
        .enumerate()
        .map(|(i, &len)| (0..len).map(|b| (b * 7 + i * 31) as u8).collect())
        .collect()
}

fn framed(packets: &[Vec<u8>]) -> Vec<u8> {
    let mut stream = Vec::new();
    for p in packets {
        stream.extend_from_slice(&(p.len() as u16).to_be_bytes());
        stream.extend_from_slice(p);
    }
    stream
}

/// Every frame `reader` gets out of `from` until the end of the stream, and the reads it took.
fn read_all(
    reader: &mut FrameReader,
    from: &mut impl Read,
    buf_len: usize,
) -> (Vec<Vec<u8>>, usize) {
    let mut buf = vec![0u8; buf_len];
    let mut frames = Vec::new();
    let mut reads = 0;
    loop {
        let n = reader
            .read_from(from, &mut buf, |f| frames.push(f.to_vec()))
            .expect("valid stream");
        if n == 0 {
            return (frames, reads);
        }
        reads += 1;
    }
}

#[test]
fn several_frames_in_one_read_all_come_out_in_order() {
    let sent = packets();
    let mut reader = FrameReader::default();
    let mut from = Chunks(VecDeque::from([framed(&sent)]));
    let (frames, reads) = read_all(&mut reader, &mut from, 64 * 1024);
    assert_eq!(reads, 1);
    assert_eq!(frames, sent);
    assert_eq!(reader.buffered(), 0);
}

#[test]
fn frames_split_across_reads_at_every_offset_come_out_whole() {
    let sent = packets();
    let stream = framed(&sent);
    for cut in 1..stream.len() {
        // Cut once anywhere (inside a length prefix too), and again a little further on.
        let cut2 = (cut + 3).min(stream.len());
        let chunks = VecDeque::from([
            stream[..cut].to_vec(),
            stream[cut..cut2].to_vec(),
            stream[cut2..].to_vec(),
        ]);
        let mut reader = FrameReader::default();
        let (frames, _) = read_all(&mut reader, &mut Chunks(chunks), 64 * 1024);
        assert_eq!(frames, sent, "cut at {cut}");
        assert_eq!(reader.buffered(), 0);
    }
}

#[test]
fn a_read_buffer_smaller_than_a_frame_still_gets_it_whole() {
    let sent = packets();
    let mut reader = FrameReader::default();
    let mut from = Chunks(VecDeque::from([framed(&sent)]));
    let (frames, reads) = read_all(&mut reader, &mut from, 7);
    assert_eq!(frames, sent);
    assert!(reads > 400, "{reads} reads of at most 7 bytes");
}

#[test]
fn a_frame_over_the_maximum_is_invalid_data_and_stays_so() {
    let mut reader = FrameReader::new(1500);
    let mut stream = framed(&[vec![1u8; 10]]);
    stream.extend_from_slice(&1501u16.to_be_bytes());
    stream.extend_from_slice(&[0u8; 100]);
    let mut from = Chunks(VecDeque::from([stream, framed(&[vec![2u8; 10]])]));
    let mut buf = [0u8; 4096];
    let mut frames = 0;
    let err = reader
        .read_from(&mut from, &mut buf, |_| frames += 1)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidData);
    assert_eq!(frames, 1, "the frame before the bad length is delivered");
    let err = reader
        .read_from(&mut from, &mut buf, |_| frames += 1)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidData);
    assert_eq!(frames, 1);
}

#[test]
fn a_socket_taking_a_few_bytes_at_a_time_still_gets_every_frame_whole() {
    let sent = packets();
    let mut writer = FrameWriter::new(8 * 1024);
    let mut socket = Stingy::new(5, 3);
    for p in &sent {
        assert!(writer.send(&mut socket, p).unwrap(), "queued");
    }
    while writer.pending() > 0 {
        writer.flush(&mut socket).unwrap();
    }
    assert_eq!(socket.written, framed(&sent));
}

#[test]
fn a_full_queue_drops_whole_frames_and_the_stream_stays_in_step() {
    let mut writer = FrameWriter::new(3000);
    let mut socket = Stingy::new(700, 0);
    let big = vec![0xabu8; 1200];
    // The first frame is half written, then the socket stops taking bytes.
    assert!(writer.send(&mut socket, &big).unwrap());
    assert_eq!(
        socket.written.len(),
        1202,
        "700 + 502: written whole while it could"
    );
    socket.allow = 0;
    assert!(writer.send(&mut socket, &big).unwrap());
    assert!(writer.send(&mut socket, &big).unwrap());
    assert_eq!(writer.pending(), 2 * 1202);
    assert!(
        !writer.send(&mut socket, &big).unwrap(),
        "dropped: the queue is full"
    );
    assert!(
        writer.send(&mut socket, b"small").unwrap(),
        "a frame that fits still goes"
    );
    // Unblocked: everything queued goes out, in order and whole.
    socket.allow = usize::MAX;
    writer.flush(&mut socket).unwrap();
    assert_eq!(writer.pending(), 0);
    let mut expected = framed(&[big.clone(), big.clone(), big, b"small".to_vec()]);
    assert_eq!(socket.written, expected);
    // Part of the queue leaves, then a frame that only fits once the unsent rest has moved to
    // the front of the queue.
    socket.allow = 0;
    assert!(writer.send(&mut socket, &[1u8; 1400]).unwrap());
    assert!(writer.send(&mut socket, &[2u8; 1400]).unwrap());
    socket.allow = 1500;
    assert!(writer.send(&mut socket, &[3u8; 1000]).unwrap());
    assert_eq!(writer.pending(), 2 * 1402 + 1002 - 1500);
    socket.allow = usize::MAX;
    writer.flush(&mut socket).unwrap();
    expected.extend(framed(&[vec![1u8; 1400], vec![2u8; 1400], vec![3u8; 1000]]));
    assert_eq!(socket.written, expected);
    let mut reader = FrameReader::default();
    let (frames, _) = read_all(
        &mut reader,
        &mut Chunks(VecDeque::from([socket.written])),
        4096,
    );
    assert_eq!(frames.len(), 7);
    assert_eq!(frames[6], vec![3u8; 1000]);
}

#[test]
fn a_packet_too_long_for_two_length_bytes_is_refused() {
    let mut writer = FrameWriter::default();
    let mut socket = Stingy::new(usize::MAX, 0);
    let err = writer.send(&mut socket, &vec![0u8; 65536]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(socket.written.is_empty());
}

#[test]
fn frames_cross_a_real_loopback_connection_in_both_directions() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut client = TcpLink::connect(addr, Duration::from_secs(5)).unwrap();
    let (server_stream, _) = listener.accept().unwrap();
    let mut server = TcpLink {
        stream: server_stream,
        reader: FrameReader::default(),
        writer: FrameWriter::default(),
    };
    client.stream.set_nonblocking(true).unwrap();
    // Many MTU-sized packets from the non-blocking side, as the publisher sends them.
    let sent: Vec<Vec<u8>> = (0..2000u32)
        .map(|i| {
            let mut p = vec![(i % 251) as u8; 1100 + (i % 100) as usize];
            p[..4].copy_from_slice(&i.to_be_bytes());
            p
        })
        .collect();
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        server
            .stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        while got.len() < 2000 {
            let n = server
                .recv_with(&mut buf, |f| got.push(f.to_vec()))
                .expect("read");
            assert_ne!(n, 0, "closed early");
        }
        assert!(server.send(b"answer").unwrap());
        got
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut next = 0;
    while next < sent.len() || client.writer.pending() > 0 {
        assert!(Instant::now() < deadline, "stuck at {next}");
        if next < sent.len() && client.send(&sent[next]).unwrap() {
            next += 1;
        } else {
            client.flush().unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let got = reader.join().unwrap();
    assert_eq!(got, sent);
    // And back: the reply frame on the non-blocking stream.
    let mut buf = [0u8; 2048];
    let mut reply = Vec::new();
    while reply.is_empty() {
        assert!(Instant::now() < deadline);
        match client.recv_with(&mut buf, |f| reply.push(f.to_vec())) {
            Ok(n) => assert_ne!(n, 0),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(reply, vec![b"answer".to_vec()]);
}

#[test]
fn the_passive_tcp_candidate_is_chosen_and_its_absence_is_explained() {
    let candidates = json!([
        {"foundation": "udpcandidate", "priority": 1076302079u64, "ip": "127.0.0.1",
         "protocol": "udp", "port": 44000, "type": "host"},
        {"foundation": "tcpcandidate", "priority": 1076276479u64, "ip": "127.0.0.1",
         "protocol": "tcp", "port": 44001, "type": "host", "tcpType": "active"},
        {"foundation": "tcpcandidate", "priority": 1076276479u64, "ip": "::1",
         "protocol": "tcp", "port": 44002, "type": "host", "tcpType": "passive"},
    ]);
    assert_eq!(
        tcp_candidate(&candidates).unwrap(),
        "[::1]:44002".parse().unwrap()
    );
    assert_eq!(
        udp_candidate(&candidates).unwrap(),
        "127.0.0.1:44000".parse().unwrap()
    );
    let udp_only = json!([candidates[0]]);
    let err = tcp_candidate(&udp_only).unwrap_err();
    assert_eq!(
        err,
        "the server offers no ICE-TCP candidate; is ICE-TCP disabled?"
    );
}
