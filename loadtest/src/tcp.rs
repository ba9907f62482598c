//! ICE-TCP for the load generator (`--tcp`): every STUN, DTLS, SRTP and SRTCP packet travels
//! over one TCP connection to the server's passive candidate as an RFC 4571 frame (two-byte
//! big-endian length, then the packet).
//!
//! [`FrameReader`] wraps the server crate's [`FrameDecoder`]; [`FrameWriter`] is its sending
//! half: it keeps whatever the socket did not take (a non-blocking socket may take part of a
//! frame) and sends it first next time, so the stream never loses its framing, and it drops a
//! whole frame when its queue is full, as a full UDP socket buffer drops a datagram. Both work
//! in buffers allocated up front: nothing is allocated per packet.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use sfu::rtc::framing::{FrameDecoder, HEADER_LEN};

/// The largest frame accepted from the server. Media is MTU-sized (a UDP datagram of the same
/// packet would be ≤ 1500 bytes) and DTLS flights are fragmented to the MTU too; a longer frame
/// is a broken stream and ends the connection.
pub const MAX_FRAME: usize = 8192;
/// Bytes the writer queues beyond what the kernel's send buffer took before it drops frames.
pub const WRITE_QUEUE: usize = 64 * 1024;

/// Reads frames from a byte stream (blocking or not).
pub struct FrameReader {
    decoder: FrameDecoder,
}

impl Default for FrameReader {
    fn default() -> Self {
        Self::new(MAX_FRAME)
    }
}

impl FrameReader {
    pub fn new(max_frame: usize) -> Self {
        Self {
            decoder: FrameDecoder::new(max_frame),
        }
    }

    /// One `read` from `from` into `buf`; calls `on_frame` for every frame it completes (none,
    /// one, or several). Returns the bytes read: 0 means the peer closed the stream. A frame
    /// over the maximum is `InvalidData`, and so is every later call.
    pub fn read_from(
        &mut self,
        from: &mut impl Read,
        buf: &mut [u8],
        on_frame: impl FnMut(&[u8]),
    ) -> io::Result<usize> {
        let n = from.read(buf)?;
        self.decoder
            .feed(&buf[..n], on_frame)
            .map_err(|e| io::Error::new(ErrorKind::InvalidData, e))?;
        Ok(n)
    }

    /// Bytes of an incomplete frame held back.
    pub fn buffered(&self) -> usize {
        self.decoder.buffered()
    }
}

/// Writes frames to a byte stream, keeping what a non-blocking socket did not take.
pub struct FrameWriter {
    /// Framed bytes not yet written; the unsent ones start at `sent`.
    queue: Vec<u8>,
    sent: usize,
}

impl Default for FrameWriter {
    fn default() -> Self {
        Self::new(WRITE_QUEUE)
    }
}

impl FrameWriter {
    /// `capacity`: framed bytes it may hold back; allocated now, never grown.
    pub fn new(capacity: usize) -> Self {
        Self {
            queue: Vec::with_capacity(capacity.max(HEADER_LEN + 1)),
            sent: 0,
        }
    }

    /// Bytes queued but not written yet.
    pub fn pending(&self) -> usize {
        self.queue.len() - self.sent
    }

    /// Frames `packet` and writes it (after anything still queued). `Ok(true)`: written or
    /// queued whole; `Ok(false)`: dropped whole, because the queue is full (the socket has
    /// not been taking bytes). A packet too long to frame is `InvalidInput`; a socket error is
    /// returned as it is (the stream is then unusable).
    pub fn send(&mut self, to: &mut impl Write, packet: &[u8]) -> io::Result<bool> {
        let framed = HEADER_LEN + packet.len();
        let len = u16::try_from(packet.len()).map_err(|_| {
            io::Error::new(ErrorKind::InvalidInput, "packet too long for a TCP frame")
        })?;
        if self.pending() > 0 {
            self.flush(to)?;
        }
        if self.pending() + framed > self.queue.capacity() {
            return Ok(false);
        }
        if self.queue.len() + framed > self.queue.capacity() {
            // Move the unsent tail to the front: a memmove within the capacity, no allocation.
            self.queue.copy_within(self.sent.., 0);
            self.queue.truncate(self.queue.len() - self.sent);
            self.sent = 0;
        }
        self.queue.extend_from_slice(&len.to_be_bytes());
        self.queue.extend_from_slice(packet);
        self.flush(to)?;
        Ok(true)
    }

    /// Writes what is queued until done or the socket would block.
    pub fn flush(&mut self, to: &mut impl Write) -> io::Result<()> {
        while self.sent < self.queue.len() {
            match to.write(&self.queue[self.sent..]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if self.sent == self.queue.len() {
            self.queue.clear();
            self.sent = 0;
        }
        Ok(())
    }
}

/// One ICE-TCP connection: the stream and its two framing halves.
pub struct TcpLink {
    pub stream: TcpStream,
    pub reader: FrameReader,
    pub writer: FrameWriter,
}

impl TcpLink {
    /// Connects to the server's passive candidate (we are the active side), without Nagle's
    /// delay (every frame is a packet that should leave now).
    pub fn connect(remote: SocketAddr, timeout: Duration) -> io::Result<Self> {
        let stream = TcpStream::connect_timeout(&remote, timeout)?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            reader: FrameReader::default(),
            writer: FrameWriter::default(),
        })
    }

    /// Sends one packet as a frame; see [`FrameWriter::send`].
    pub fn send(&mut self, packet: &[u8]) -> io::Result<bool> {
        self.writer.send(&mut self.stream, packet)
    }

    /// Writes what an earlier send left queued.
    pub fn flush(&mut self) -> io::Result<()> {
        self.writer.flush(&mut self.stream)
    }

    /// Reads and drops whatever has arrived on a non-blocking stream (a publisher has no use
    /// for the server's RTCP, but must not let it pile up). `Ok(true)`: the server closed it.
    pub fn discard_input(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        loop {
            match self.stream.read(buf) {
                Ok(0) => return Ok(true),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
    }

    /// One read; `on_frame` for each frame completed. `Ok(0)`: the server closed the
    /// connection.
    pub fn recv_with(&mut self, buf: &mut [u8], on_frame: impl FnMut(&[u8])) -> io::Result<usize> {
        self.reader.read_from(&mut self.stream, buf, on_frame)
    }
}
