//! Batched UDP receiving with Linux `recvmmsg(2)`: up to [`BATCH`] datagrams per system call
//! instead of one receive (and one io_uring round trip) each.
//!
//! [`BatchReceiver::recv_batch`] is one non-blocking attempt (`MSG_DONTWAIT`) on a raw fd. The
//! worker drains its socket with it while datagrams are queued and, once the socket is empty,
//! waits for the next one through glommio (io_uring), then drains again. The buffers, headers,
//! iovecs and address slots are allocated once and reused: a receive allocates nothing.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::unix::io::RawFd;

/// Datagrams per `recvmmsg` call: enough that a busy socket costs one syscall per tens of
/// datagrams, few enough that the last datagram of a batch does not wait long behind the
/// others (the worker sends each datagram's copies before handling the next).
pub const BATCH: usize = 32;

/// One received datagram of the last batch.
pub struct Datagram<'a> {
    pub data: &'a [u8],
    pub from: SocketAddr,
    /// The datagram did not fit its buffer (the kernel cut it): reject it.
    pub truncated: bool,
}

/// Reused `recvmmsg` arguments and the buffers the datagrams land in.
pub struct BatchReceiver {
    buf_len: usize,
    bufs: Vec<u8>,
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    addrs: Vec<libc::sockaddr_storage>,
    /// Datagrams the last call received.
    len: usize,
}

impl BatchReceiver {
    /// Receivers of datagrams up to `buf_len` bytes (longer ones are reported truncated).
    pub fn new(buf_len: usize) -> Self {
        // SAFETY: `mmsghdr`, `iovec` and `sockaddr_storage` are plain C structs of integers and
        // raw pointers; all-zero bytes is a valid value of each (null pointers, zero lengths).
        let (hdr, iov, addr) = unsafe {
            (
                std::mem::zeroed::<libc::mmsghdr>(),
                std::mem::zeroed::<libc::iovec>(),
                std::mem::zeroed::<libc::sockaddr_storage>(),
            )
        };
        Self {
            buf_len,
            bufs: vec![0; buf_len * BATCH],
            hdrs: vec![hdr; BATCH],
            iovs: vec![iov; BATCH],
            addrs: vec![addr; BATCH],
            len: 0,
        }
    }

    /// Tries once to receive up to [`BATCH`] datagrams from `fd` without blocking. Returns how
    /// many arrived (`Ok(0)`: none was queued). Retries by itself only on `EINTR`.
    pub fn recv_batch(&mut self, fd: RawFd) -> io::Result<usize> {
        self.len = 0;
        let (bufs, iovs, addrs) = (
            self.bufs.as_mut_ptr(),
            self.iovs.as_mut_ptr(),
            self.addrs.as_mut_ptr(),
        );
        for (i, h) in self.hdrs.iter_mut().enumerate() {
            // SAFETY (of the pointer arithmetic): `i < BATCH`, and `bufs` holds `BATCH`
            // buffers of `buf_len` bytes, `iovs` and `addrs` `BATCH` slots each.
            self.iovs[i] = libc::iovec {
                iov_base: bufs.wrapping_add(i * self.buf_len).cast(),
                iov_len: self.buf_len,
            };
            h.msg_hdr.msg_name = addrs.wrapping_add(i).cast();
            h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as _;
            h.msg_hdr.msg_iov = iovs.wrapping_add(i);
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = std::ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        loop {
            // SAFETY: every header points at its own address slot (of the size it claims) and
            // its own iovec, which points at its own `buf_len`-byte buffer; all of them live in
            // `self` and nothing else touches them during the call. The kernel writes only
            // within those buffers, slots and `hdrs[..BATCH]`. `BATCH` fits in `c_uint`.
            let r = unsafe {
                libc::recvmmsg(
                    fd,
                    self.hdrs.as_mut_ptr(),
                    BATCH as libc::c_uint,
                    libc::MSG_DONTWAIT as _,
                    std::ptr::null_mut(),
                )
            };
            if r >= 0 {
                self.len = r as usize;
                return Ok(self.len);
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Ok(0),
                _ => return Err(e),
            }
        }
    }

    /// The `i`-th datagram of the last batch (`None` past its end, or for a sender address
    /// that is neither IPv4 nor IPv6).
    pub fn get(&self, i: usize) -> Option<Datagram<'_>> {
        if i >= self.len {
            return None;
        }
        let h = &self.hdrs[i];
        let n = (h.msg_len as usize).min(self.buf_len);
        let from = read_addr(&self.addrs[i], h.msg_hdr.msg_namelen)?;
        let start = i * self.buf_len;
        Some(Datagram {
            data: &self.bufs[start..start + n],
            from,
            truncated: h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 || n >= self.buf_len,
        })
    }
}

/// The socket address the kernel wrote into `a` (`len` bytes of it), if IPv4 or IPv6.
fn read_addr(a: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match a.ss_family as libc::c_int {
        libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a `sockaddr_in`, which fits in it
            // (`sockaddr_storage` is large and aligned enough for every address type).
            let v4 = unsafe { &*(a as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(v4.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(v4.sin_port),
            )))
        }
        libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for `sockaddr_in6`.
            let v6 = unsafe { &*(a as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(v6.sin6_addr.s6_addr),
                u16::from_be(v6.sin6_port),
                v6.sin6_flowinfo,
                v6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::unix::io::AsRawFd;
    use std::time::{Duration, Instant};

    /// Receives until `want` datagrams arrived (or 2 s passed), batch by batch.
    fn drain(
        rx: &UdpSocket,
        r: &mut BatchReceiver,
        want: usize,
    ) -> Vec<(Vec<u8>, SocketAddr, bool)> {
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut got = Vec::new();
        while got.len() < want && Instant::now() < deadline {
            let n = r.recv_batch(rx.as_raw_fd()).expect("recvmmsg");
            assert!(n <= BATCH);
            for i in 0..n {
                let d = r.get(i).expect("datagram");
                got.push((d.data.to_vec(), d.from, d.truncated));
            }
            if n == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        got
    }

    fn batch_receives_every_datagram_intact_in_order_with_its_sender(ip: &str) {
        let (Ok(rx), Ok(a), Ok(b)) = (
            UdpSocket::bind((ip, 0)),
            UdpSocket::bind((ip, 0)),
            UdpSocket::bind((ip, 0)),
        ) else {
            eprintln!("skipped: cannot bind {ip}");
            return;
        };
        let to = rx.local_addr().unwrap();
        let mut sent = Vec::new();
        for i in 0..100usize {
            let s = if i % 2 == 0 { &a } else { &b };
            let d: Vec<u8> = (0..(i * 13) % 1500).map(|j| (i + j) as u8).collect();
            s.send_to(&d, to).unwrap();
            sent.push((d, s.local_addr().unwrap(), false));
        }
        let mut r = BatchReceiver::new(2048);
        assert_eq!(drain(&rx, &mut r, 100), sent);
        // Empty socket: nothing, no error.
        assert_eq!(r.recv_batch(rx.as_raw_fd()).unwrap(), 0);
        assert!(r.get(0).is_none());
    }

    #[test]
    fn a_batch_receives_every_ipv4_datagram_intact_in_order_with_its_sender() {
        batch_receives_every_datagram_intact_in_order_with_its_sender("127.0.0.1");
    }

    #[test]
    fn a_batch_receives_every_ipv6_datagram_intact_in_order_with_its_sender() {
        batch_receives_every_datagram_intact_in_order_with_its_sender("::1");
    }

    #[test]
    fn a_datagram_longer_than_its_buffer_is_reported_truncated_and_the_next_is_intact() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        tx.send_to(&[7u8; 300], to).unwrap();
        tx.send_to(&[8u8; 99], to).unwrap();
        tx.send_to(&[9u8; 100], to).unwrap();
        let mut r = BatchReceiver::new(100);
        let got = drain(&rx, &mut r, 3);
        assert_eq!(got.len(), 3);
        assert!(got[0].2, "300 bytes into 100 is truncated");
        assert_eq!((got[1].0.as_slice(), got[1].2), (&[8u8; 99][..], false));
        // Exactly the buffer's size cannot be told from a longer one: rejected too.
        assert!(got[2].2);
    }
}
