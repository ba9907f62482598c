//! Where a transport's packets come from and go to: a UDP 5-tuple (the worker's socket and the
//! browser's address) or one ICE-TCP connection to the worker's media port. The worker's
//! address index, a transport's selected tuple and candidates, and the outbox all speak
//! `Remote`, so a transport reached over TCP is handled exactly like one over UDP; only the
//! worker's sending differs (worker/tcp.rs frames and queues what goes to a connection).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// A worker-local id of an accepted ICE-TCP connection (never reused while it is open).
pub type TcpConnId = u32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Remote {
    /// Datagrams from / to this address on the worker's UDP socket.
    Udp(SocketAddr),
    /// Frames on the worker's TCP connection `conn`, whose peer is `addr`. Two connections
    /// are two remotes even if the peer reused a port.
    Tcp { addr: SocketAddr, conn: TcpConnId },
}

impl Remote {
    /// The peer's address (transport protocol aside).
    pub fn addr(&self) -> SocketAddr {
        match *self {
            Remote::Udp(a) | Remote::Tcp { addr: a, .. } => a,
        }
    }

    pub fn ip(&self) -> IpAddr {
        self.addr().ip()
    }

    /// The address, if this is a UDP remote.
    pub fn udp(&self) -> Option<SocketAddr> {
        match *self {
            Remote::Udp(a) => Some(a),
            Remote::Tcp { .. } => None,
        }
    }

    pub fn is_tcp(&self) -> bool {
        matches!(self, Remote::Tcp { .. })
    }
}

impl From<SocketAddr> for Remote {
    fn from(a: SocketAddr) -> Self {
        Remote::Udp(a)
    }
}

impl fmt::Display for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Remote::Udp(a) => write!(f, "udp/{a}"),
            Remote::Tcp { addr, conn } => write!(f, "tcp/{addr}#{conn}"),
        }
    }
}
