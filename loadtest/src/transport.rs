//! One WebRTC transport as a browser would run it against an ICE-lite server: a UDP socket of
//! its own (or, with `--tcp`, a TCP connection to the server's passive ICE-TCP candidate, see
//! [`crate::tcp`]), a STUN binding request with USE-CANDIDATE, a DTLS handshake as the client,
//! then SRTP.

use std::io::{self, ErrorKind};
use std::net::{SocketAddr, UdpSocket};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use rand::distributions::Alphanumeric;
use rand::Rng;
use serde_json::{json, Value};
use sfu::rtc::dtls::{
    DtlsCertificate, DtlsEvent, DtlsRole, DtlsRuntime, DtlsSession, RemoteFingerprint,
    SrtpProfileId,
};
use sfu::rtc::srtp::{split_keying_material, SrtpProfile, SrtpSession};
use stun::agent::TransactionId;
use stun::attributes::{ATTR_ICE_CONTROLLING, ATTR_PRIORITY, ATTR_USERNAME, ATTR_USE_CANDIDATE};
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::{Message, Setter, BINDING_REQUEST, BINDING_SUCCESS};
use stun::textattrs::TextAttribute;

use crate::signaling::Signaling;
use crate::tcp::TcpLink;

const SETUP_TIMEOUT: Duration = Duration::from_secs(15);
const STUN_RETRY: Duration = Duration::from_millis(200);

/// Process-wide DTLS identity and the thread running the handshakes.
pub struct DtlsClient {
    pub runtime: DtlsRuntime,
    pub fingerprint: String,
}

impl DtlsClient {
    pub fn start() -> Result<Self, String> {
        let cert = Arc::new(DtlsCertificate::generate().map_err(|e| e.to_string())?);
        let fingerprint = cert.fingerprint_sha256();
        let runtime = DtlsRuntime::start(cert).map_err(|e| e.to_string())?;
        Ok(Self {
            runtime,
            fingerprint,
        })
    }
}

/// The ICE credentials of a connected transport, for consent checks (RFC 7675): like a
/// browser, a client sends a binding request every few seconds, or the server closes the
/// transport after 30 s without any.
#[derive(Debug, Clone)]
pub struct Consent {
    pub server_ufrag: String,
    pub client_ufrag: String,
    pub server_pwd: String,
}

impl Consent {
    /// A consent check (a binding request without USE-CANDIDATE).
    pub fn request(&self) -> Vec<u8> {
        binding_request(
            &self.server_ufrag,
            &self.client_ufrag,
            &self.server_pwd,
            false,
        )
    }
}

/// Which ICE candidate of the server a transport uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Udp,
    Tcp,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Udp => "udp",
            Protocol::Tcp => "tcp",
        }
    }
}

/// The media path of a transport: its UDP socket, or its ICE-TCP connection.
pub enum Link {
    Udp(UdpSocket),
    Tcp(TcpLink),
}

impl Link {
    pub fn protocol(&self) -> Protocol {
        match self {
            Link::Udp(_) => Protocol::Udp,
            Link::Tcp(_) => Protocol::Tcp,
        }
    }
}

/// What the handshakes need of a media path: send one packet, and wait (up to the read
/// timeout) for the next packets.
pub trait PacketIo {
    fn send_packet(&mut self, packet: &[u8]) -> io::Result<()>;
    /// Receives once: one datagram, or every frame one read of the stream completes. A timeout
    /// is an error, as is a closed stream.
    fn recv_packets(&mut self, buf: &mut [u8], on_packet: impl FnMut(&[u8])) -> io::Result<()>;
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()>;
    /// How long to wait for a binding response before sending the request again.
    fn stun_retry(&self) -> Duration;
}

impl PacketIo for UdpSocket {
    fn send_packet(&mut self, packet: &[u8]) -> io::Result<()> {
        self.send(packet).map(drop)
    }

    fn recv_packets(&mut self, buf: &mut [u8], mut on_packet: impl FnMut(&[u8])) -> io::Result<()> {
        let n = self.recv(buf)?;
        on_packet(&buf[..n]);
        Ok(())
    }

    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        UdpSocket::set_read_timeout(self, timeout)
    }

    fn stun_retry(&self) -> Duration {
        STUN_RETRY
    }
}

impl PacketIo for TcpLink {
    fn send_packet(&mut self, packet: &[u8]) -> io::Result<()> {
        // The stream blocks during the handshakes, so a frame is written whole or fails.
        match self.send(packet)? {
            true => Ok(()),
            false => Err(io::Error::new(
                ErrorKind::WouldBlock,
                "TCP write queue full",
            )),
        }
    }

    fn recv_packets(&mut self, buf: &mut [u8], on_packet: impl FnMut(&[u8])) -> io::Result<()> {
        match self.recv_with(buf, on_packet)? {
            0 => Err(io::Error::new(
                ErrorKind::UnexpectedEof,
                "the server closed the ICE-TCP connection",
            )),
            _ => Ok(()),
        }
    }

    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.stream.set_read_timeout(timeout)
    }

    fn stun_retry(&self) -> Duration {
        // A reliable stream loses nothing: no retransmissions (RFC 6544 §7.1), whose late
        // answers would only be mistaken for lost ones.
        SETUP_TIMEOUT
    }
}

/// A connected transport: media flows over `socket` (a [`UdpSocket`] unless said otherwise),
/// protected by `srtp`.
pub struct Transport<S = UdpSocket> {
    pub id: String,
    pub consent: Consent,
    pub socket: S,
    pub srtp: SrtpSession,
    /// Kept alive for the whole run: dropping it sends close_notify, which closes the
    /// server's transport.
    pub _dtls: DtlsSession,
}

/// create-transport, connect-transport, ICE and DTLS over UDP.
pub fn open(sig: &mut Signaling, direction: &str, dtls: &DtlsClient) -> Result<Transport, String> {
    let offer = create(sig, direction)?;
    let remote = udp_candidate(&offer.candidates)?;
    let local_ip = match (remote.ip().is_loopback(), remote.is_ipv4()) {
        (true, true) => "127.0.0.1",
        (true, false) => "::1",
        (false, true) => "0.0.0.0",
        (false, false) => "::",
    };
    let socket = UdpSocket::bind((local_ip, 0)).map_err(|e| e.to_string())?;
    socket.connect(remote).map_err(|e| e.to_string())?;
    set_buffer_sizes(&socket);
    offer.connect(sig, socket, dtls)
}

/// The same over ICE-TCP: a connection to the server's passive TCP candidate.
pub fn open_tcp(
    sig: &mut Signaling,
    direction: &str,
    dtls: &DtlsClient,
) -> Result<Transport<TcpLink>, String> {
    let offer = create(sig, direction)?;
    let remote = tcp_candidate(&offer.candidates)?;
    let link = TcpLink::connect(remote, SETUP_TIMEOUT)
        .map_err(|e| format!("ICE-TCP connect to {remote}: {e}"))?;
    set_buffer_sizes(&link.stream);
    link.stream
        .set_write_timeout(Some(SETUP_TIMEOUT))
        .map_err(|e| e.to_string())?;
    offer.connect(sig, link, dtls)
}

/// [`open`] or [`open_tcp`], as a [`Link`].
pub fn open_link(
    sig: &mut Signaling,
    direction: &str,
    dtls: &DtlsClient,
    protocol: Protocol,
) -> Result<Transport<Link>, String> {
    Ok(match protocol {
        Protocol::Udp => open(sig, direction, dtls)?.map_socket(Link::Udp),
        Protocol::Tcp => open_tcp(sig, direction, dtls)?.map_socket(Link::Tcp),
    })
}

impl<S> Transport<S> {
    fn map_socket<T>(self, f: impl FnOnce(S) -> T) -> Transport<T> {
        Transport {
            id: self.id,
            consent: self.consent,
            socket: f(self.socket),
            srtp: self.srtp,
            _dtls: self._dtls,
        }
    }
}

/// A create-transport answer.
struct Offer {
    id: String,
    ufrag: String,
    pwd: String,
    candidates: Value,
    fingerprints: Vec<RemoteFingerprint>,
}

fn create(sig: &mut Signaling, direction: &str) -> Result<Offer, String> {
    let t = sig.request("create-transport", json!({ "direction": direction }))?;
    let id = t["id"]
        .as_str()
        .ok_or("create-transport: no id")?
        .to_owned();
    let ufrag = t["iceParameters"]["usernameFragment"]
        .as_str()
        .ok_or("no ufrag")?
        .to_owned();
    let pwd = t["iceParameters"]["password"]
        .as_str()
        .ok_or("no password")?
        .to_owned();
    let fingerprints: Vec<RemoteFingerprint> = t["dtlsParameters"]["fingerprints"]
        .as_array()
        .ok_or("no fingerprints")?
        .iter()
        .filter(|f| f["algorithm"] == "sha-256")
        .map(|f| RemoteFingerprint {
            algorithm: "sha-256".into(),
            value: f["value"].as_str().unwrap_or_default().to_owned(),
        })
        .collect();
    Ok(Offer {
        id,
        ufrag,
        pwd,
        candidates: t["iceCandidates"].clone(),
        fingerprints,
    })
}

impl Offer {
    /// connect-transport, then ICE and DTLS over `socket`.
    fn connect<S: PacketIo>(
        self,
        sig: &mut Signaling,
        mut socket: S,
        dtls: &DtlsClient,
    ) -> Result<Transport<S>, String> {
        sig.request(
            "connect-transport",
            json!({
                "transportId": self.id,
                "dtlsParameters": {
                    "role": "client",
                    "fingerprints": [{"algorithm": "sha-256", "value": dtls.fingerprint}],
                },
            }),
        )?;
        let client_ufrag = random_string(8);
        ice_connect(&mut socket, &self.ufrag, &client_ufrag, &self.pwd)?;
        let (srtp, session) = dtls_connect(&mut socket, dtls, self.fingerprints)?;
        Ok(Transport {
            id: self.id,
            consent: Consent {
                server_ufrag: self.ufrag,
                client_ufrag,
                server_pwd: self.pwd,
            },
            socket,
            srtp,
            _dtls: session,
        })
    }
}

pub fn udp_candidate(candidates: &Value) -> Result<SocketAddr, String> {
    let c = candidates
        .as_array()
        .and_then(|cs| {
            cs.iter().find(|c| {
                c["protocol"]
                    .as_str()
                    .unwrap_or("udp")
                    .eq_ignore_ascii_case("udp")
            })
        })
        .ok_or("no UDP candidate")?;
    candidate_address(c)
}

/// The server's passive ICE-TCP candidate (the highest priority one, if several).
pub fn tcp_candidate(candidates: &Value) -> Result<SocketAddr, String> {
    let c = candidates
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| {
            c["protocol"]
                .as_str()
                .is_some_and(|p| p.eq_ignore_ascii_case("tcp"))
                && c["tcpType"]
                    .as_str()
                    .is_none_or(|t| t.eq_ignore_ascii_case("passive"))
        })
        .max_by_key(|c| c["priority"].as_u64().unwrap_or(0))
        .ok_or("the server offers no ICE-TCP candidate; is ICE-TCP disabled?")?;
    candidate_address(c)
}

fn candidate_address(c: &Value) -> Result<SocketAddr, String> {
    let ip = c["ip"]
        .as_str()
        .or_else(|| c["address"].as_str())
        .ok_or("candidate without ip")?;
    let port = c["port"].as_u64().ok_or("candidate without port")?;
    format!("{ip}:{port}")
        .parse()
        .or_else(|_| format!("[{ip}]:{port}").parse())
        .map_err(|e| format!("candidate {ip}:{port}: {e}"))
}

fn set_buffer_sizes(socket: &impl std::os::fd::AsRawFd) {
    for opt in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
        let _ = set_socket_option(socket, opt, 1 << 20);
    }
}

/// Sets the `SOL_SOCKET` int option `opt` of `socket` to `value`.
pub(crate) fn set_socket_option(
    socket: &impl std::os::fd::AsRawFd,
    opt: libc::c_int,
    value: libc::c_int,
) -> std::io::Result<()> {
    // SAFETY: a valid fd and a c_int option value of the right size that outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn random_string(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// A binding request as Chromium sends it (controlling agent; `nominate`: with USE-CANDIDATE,
/// as when it nominates aggressively).
pub fn binding_request(
    server_ufrag: &str,
    client_ufrag: &str,
    server_pwd: &str,
    nominate: bool,
) -> Vec<u8> {
    let mut m = Message::new();
    m.set_type(BINDING_REQUEST);
    m.transaction_id = TransactionId::new();
    m.write_header();
    let username = format!("{server_ufrag}:{client_ufrag}");
    let build = |m: &mut Message| -> Result<(), stun::Error> {
        TextAttribute::new(ATTR_USERNAME, username).add_to(m)?;
        m.add(ATTR_PRIORITY, &1_845_501_695u32.to_be_bytes());
        m.add(ATTR_ICE_CONTROLLING, &rand::random::<u64>().to_be_bytes());
        if nominate {
            m.add(ATTR_USE_CANDIDATE, &[]);
        }
        MessageIntegrity::new_short_term_integrity(server_pwd.to_owned()).add_to(m)?;
        FINGERPRINT.add_to(m)
    };
    build(&mut m).expect("building a STUN request cannot fail");
    m.raw.clone()
}

fn ice_connect(
    socket: &mut impl PacketIo,
    ufrag: &str,
    client_ufrag: &str,
    pwd: &str,
) -> Result<(), String> {
    let deadline = Instant::now() + SETUP_TIMEOUT;
    let retry = socket.stun_retry();
    socket
        .set_read_timeout(Some(retry))
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 1500];
    while Instant::now() < deadline {
        let request = binding_request(ufrag, client_ufrag, pwd, true);
        socket
            .send_packet(&request)
            .map_err(|e| format!("STUN send: {e}"))?;
        let retry_at = Instant::now() + retry;
        let mut answered = false;
        while Instant::now() < retry_at && !answered {
            let received = socket.recv_packets(&mut buf, |packet| {
                if !stun::message::is_message(packet) {
                    return;
                }
                let mut response = Message::new();
                if response.unmarshal_binary(packet).is_ok()
                    && response.typ == BINDING_SUCCESS
                    && response.transaction_id.0 == request[8..20]
                {
                    answered = true;
                }
            });
            match received {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Err(format!("ICE: {e}")),
                Err(_) => break,
            }
        }
        if answered {
            return Ok(());
        }
    }
    Err("ICE: no binding response".into())
}

fn dtls_connect(
    socket: &mut impl PacketIo,
    dtls: &DtlsClient,
    server_fingerprints: Vec<RemoteFingerprint>,
) -> Result<(SrtpSession, DtlsSession), String> {
    let (tx, events) = mpsc::channel();
    let session = dtls.runtime.new_session(
        DtlsRole::Client,
        server_fingerprints,
        Arc::new(move |event| {
            let _ = tx.send(event);
        }),
    );
    socket
        .set_read_timeout(Some(Duration::from_millis(2)))
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + SETUP_TIMEOUT;
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        while let Ok(event) = events.try_recv() {
            match event {
                DtlsEvent::Transmit(datagram) => {
                    socket
                        .send_packet(&datagram)
                        .map_err(|e| format!("DTLS send: {e}"))?;
                }
                DtlsEvent::Connected(keys) => {
                    let profile = srtp_profile(keys.profile);
                    let keys = split_keying_material(profile, &keys.material, true)
                        .map_err(|e| e.to_string())?;
                    let srtp = SrtpSession::new(&keys).map_err(|e| e.to_string())?;
                    socket.set_read_timeout(None).map_err(|e| e.to_string())?;
                    return Ok((srtp, session));
                }
                DtlsEvent::Failed(reason) => return Err(format!("DTLS failed: {reason}")),
                DtlsEvent::Closed => return Err("DTLS closed during the handshake".into()),
                // The load generator never asks for SCTP.
                DtlsEvent::Sctp(_) => {}
            }
        }
        let received = socket.recv_packets(&mut buf, |packet| {
            // RFC 7983: DTLS records start with 20..=63.
            if packet.first().is_some_and(|b| (20..=63).contains(b)) {
                session.feed(packet);
            }
        });
        if let Err(e) = received {
            if e.kind() == ErrorKind::UnexpectedEof {
                return Err(format!("DTLS: {e}"));
            }
        }
    }
    Err("DTLS handshake timed out".into())
}

fn srtp_profile(p: SrtpProfileId) -> SrtpProfile {
    match p {
        SrtpProfileId::AeadAes256Gcm => SrtpProfile::AeadAes256Gcm,
        SrtpProfileId::AeadAes128Gcm => SrtpProfile::AeadAes128Gcm,
        SrtpProfileId::Aes128CmHmacSha1_80 => SrtpProfile::Aes128CmHmacSha1_80,
        SrtpProfileId::Aes128CmHmacSha1_32 => SrtpProfile::Aes128CmHmacSha1_32,
    }
}
