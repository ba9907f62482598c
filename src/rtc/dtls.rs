//! DTLS handshake → SRTP keying material.
//!
//! webrtc-dtls is built on tokio (it spawns tasks and uses tokio timers), while the media workers
//! are glommio executors. So every DTLS session runs on one small current-thread tokio runtime
//! living on its own std thread (the "dtls" thread). The worker keeps owning the UDP socket: it
//! feeds incoming DTLS records in with [`DtlsSession::feed`] and receives outgoing records, and
//! finally the exported SRTP keys, through the session's [`DtlsSink`].
//!
//! Each session ends with exactly one terminal event: [`DtlsEvent::Failed`] or
//! [`DtlsEvent::Closed`].

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use dtls_util::{Conn, KeyingMaterialExporter};
use sha1::Sha1;
use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};
use tokio::sync::{oneshot, Notify};
use webrtc_dtls::config::{ClientAuthType, Config, ExtendedMasterSecretType};
use webrtc_dtls::conn::DTLSConn;
use webrtc_dtls::crypto::Certificate;
use webrtc_dtls::extension::extension_use_srtp::SrtpProtectionProfile;

pub use super::dtls_gate::DtlsLimits;
use super::dtls_gate::{has_plaintext_alert, HandshakeGate, HandshakePermit};
use super::sctp::{DataRate, Outgoing, SctpMessage, SctpOutbox, SctpRole};

/// Per-session bound of queued incoming datagrams; beyond it datagrams are dropped. Room for
/// a burst of SCTP packets (a 256 KiB data-channel message is about 220 of them).
const INBOUND_QUEUE_LIMIT: usize = 256;
/// DTLS handshake records are fragmented to the MTU; anything larger is not ours.
const MAX_DATAGRAM_LEN: usize = 2048;
/// Limits how often the last flight is replayed to a peer that keeps retransmitting.
const LAST_FLIGHT_REPLAY_INTERVAL: Duration = Duration::from_millis(250);
const SRTP_EXPORTER_LABEL: &str = "EXTRACTOR-dtls_srtp";

const CONTENT_TYPE_CHANGE_CIPHER_SPEC: u8 = 20;
const CONTENT_TYPE_HANDSHAKE: u8 = 22;
const RECORD_HEADER_LEN: usize = 13;

#[derive(Debug, thiserror::Error)]
pub enum DtlsError {
    #[error("certificate generation failed: {0}")]
    Certificate(String),
    #[error("unsupported fingerprint algorithm \"{0}\"")]
    UnsupportedFingerprintAlgorithm(String),
    #[error("no remote fingerprint given")]
    NoRemoteFingerprint,
}

/// The process-wide self-signed certificate (ECDSA P-256) presented to every peer.
pub struct DtlsCertificate {
    certificate: Certificate,
    fingerprint_sha256: String,
}

impl DtlsCertificate {
    pub fn generate() -> Result<Self, DtlsError> {
        // rcgen's default key pair is ECDSA P-256 with SHA-256. webrtc-dtls unwraps inside, so
        // keep a panic there from escaping.
        let generated =
            std::panic::catch_unwind(|| Certificate::generate_self_signed(vec!["sfu".to_owned()]))
                .map_err(|_| DtlsError::Certificate("certificate generator panicked".into()))?
                .map_err(|e| DtlsError::Certificate(e.to_string()))?;
        let der = generated
            .certificate
            .first()
            .ok_or_else(|| DtlsError::Certificate("no certificate generated".into()))?;
        let fingerprint_sha256 = format_fingerprint(&Sha256::digest(der.as_ref()));
        Ok(Self {
            certificate: generated,
            fingerprint_sha256,
        })
    }

    /// "sha-256" fingerprint in the form mediasoup/SDP use: uppercase hex pairs joined by ':'.
    pub fn fingerprint_sha256(&self) -> String {
        self.fingerprint_sha256.clone()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtlsRole {
    Client,
    Server,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteFingerprint {
    /// "sha-1", "sha-224", "sha-256", "sha-384" or "sha-512".
    pub algorithm: String,
    pub value: String,
}

impl RemoteFingerprint {
    /// The fingerprint of `der` computed with this fingerprint's algorithm.
    fn digest_of(&self, der: &[u8]) -> Result<String, DtlsError> {
        let digest = match self.algorithm.to_ascii_lowercase().as_str() {
            "sha-1" => Sha1::digest(der).to_vec(),
            "sha-224" => Sha224::digest(der).to_vec(),
            "sha-256" => Sha256::digest(der).to_vec(),
            "sha-384" => Sha384::digest(der).to_vec(),
            "sha-512" => Sha512::digest(der).to_vec(),
            other => return Err(DtlsError::UnsupportedFingerprintAlgorithm(other.to_owned())),
        };
        Ok(format_fingerprint(&digest))
    }

    fn matches(&self, der: &[u8]) -> bool {
        self.digest_of(der)
            .map(|ours| ours.eq_ignore_ascii_case(self.value.trim()))
            .unwrap_or(false)
    }
}

/// Checks signalled fingerprints at the API edge: at least one, every algorithm known.
pub fn check_remote_fingerprints(remote: &[RemoteFingerprint]) -> Result<(), DtlsError> {
    if remote.is_empty() {
        return Err(DtlsError::NoRemoteFingerprint);
    }
    for fingerprint in remote {
        fingerprint.digest_of(&[])?;
    }
    Ok(())
}

fn format_fingerprint(digest: &[u8]) -> String {
    digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SrtpProfileId {
    AeadAes256Gcm,
    AeadAes128Gcm,
    Aes128CmHmacSha1_80,
    Aes128CmHmacSha1_32,
}

impl SrtpProfileId {
    /// Offered and accepted in this order (mediasoup's preference).
    pub const PREFERENCE: [SrtpProfileId; 4] = [
        SrtpProfileId::AeadAes256Gcm,
        SrtpProfileId::AeadAes128Gcm,
        SrtpProfileId::Aes128CmHmacSha1_80,
        SrtpProfileId::Aes128CmHmacSha1_32,
    ];

    pub fn key_len(self) -> usize {
        match self {
            SrtpProfileId::AeadAes256Gcm => 32,
            _ => 16,
        }
    }

    pub fn salt_len(self) -> usize {
        match self {
            SrtpProfileId::AeadAes256Gcm | SrtpProfileId::AeadAes128Gcm => 12,
            _ => 14,
        }
    }

    /// Length of the exported keying material: both directions' key and salt.
    pub fn material_len(self) -> usize {
        2 * (self.key_len() + self.salt_len())
    }

    fn to_dtls(self) -> SrtpProtectionProfile {
        match self {
            SrtpProfileId::AeadAes256Gcm => SrtpProtectionProfile::Srtp_Aead_Aes_256_Gcm,
            SrtpProfileId::AeadAes128Gcm => SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
            SrtpProfileId::Aes128CmHmacSha1_80 => {
                SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80
            }
            SrtpProfileId::Aes128CmHmacSha1_32 => {
                SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_32
            }
        }
    }

    fn from_dtls(profile: SrtpProtectionProfile) -> Option<Self> {
        Self::PREFERENCE
            .into_iter()
            .find(|p| p.to_dtls() == profile)
    }
}

/// Exported SRTP keys. Layout (RFC 5764 §4.2): client key | server key | client salt | server salt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DtlsKeyingMaterial {
    pub profile: SrtpProfileId,
    pub material: Vec<u8>,
    /// Our role in the handshake (decides which half is ours).
    pub role: DtlsRole,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DtlsEvent {
    /// A datagram to send to the peer.
    Transmit(Vec<u8>),
    Connected(DtlsKeyingMaterial),
    /// A data-channel message received on the transport's SCTP association (src/rtc/sctp.rs).
    Sctp(SctpMessage),
    /// Terminal: the handshake failed (bad fingerprint, timeout, alert, ...).
    Failed(String),
    /// Terminal: closed by us or by the peer.
    Closed,
}

pub type DtlsSink = Arc<dyn Fn(DtlsEvent) + Send + Sync>;

/// Owns the "dtls" thread and its tokio runtime. Drop shuts it down.
pub struct DtlsRuntime {
    cert: Arc<DtlsCertificate>,
    handle: tokio::runtime::Handle,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    live: Arc<AtomicUsize>,
    limits: DtlsLimits,
    gate: Arc<HandshakeGate>,
    data_rate: DataRate,
}

impl DtlsRuntime {
    /// With the default [`DtlsLimits`].
    pub fn start(cert: Arc<DtlsCertificate>) -> std::io::Result<Self> {
        Self::start_with(cert, DtlsLimits::default())
    }

    pub fn start_with(cert: Arc<DtlsCertificate>, limits: DtlsLimits) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()?;
        let handle = runtime.handle().clone();
        let (shutdown, shutdown_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("dtls".into())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = shutdown_rx.await;
                });
                // Dropping the runtime drops every remaining session task (and its DTLSConn).
                runtime.shutdown_timeout(Duration::from_secs(1));
            })?;
        Ok(Self {
            cert,
            handle,
            shutdown: Some(shutdown),
            thread: Some(thread),
            live: Arc::new(AtomicUsize::new(0)),
            limits,
            gate: Arc::new(HandshakeGate::default()),
            data_rate: DataRate::default(),
        })
    }

    /// What one data producer may push (sessions started from now on).
    pub fn set_data_rate(&mut self, rate: DataRate) {
        self.data_rate = rate;
    }

    /// Starts the handshake in `role`; events go to `sink` (called on the dtls thread).
    pub fn new_session(
        &self,
        role: DtlsRole,
        remote: Vec<RemoteFingerprint>,
        sink: DtlsSink,
    ) -> DtlsSession {
        self.new_session_from(role, remote, None, sink)
    }

    /// [`Self::new_session`] for a peer at `peer_ip`, counted against the per-IP handshake cap.
    /// Beyond a cap the session reports [`DtlsEvent::Failed`] at once (from this thread).
    pub fn new_session_from(
        &self,
        role: DtlsRole,
        remote: Vec<RemoteFingerprint>,
        peer_ip: Option<IpAddr>,
        sink: DtlsSink,
    ) -> DtlsSession {
        self.new_session_with(role, remote, peer_ip, None, sink)
    }

    /// [`Self::new_session_from`] that also runs SCTP (data channels) over the connection
    /// once the handshake is done, in `sctp`'s role (src/rtc/sctp.rs).
    pub fn new_session_with(
        &self,
        role: DtlsRole,
        remote: Vec<RemoteFingerprint>,
        peer_ip: Option<IpAddr>,
        sctp: Option<SctpRole>,
        sink: DtlsSink,
    ) -> DtlsSession {
        let shared = Arc::new(Shared::default());
        let permit = match self.gate.admit(peer_ip, &self.limits) {
            Ok(permit) => permit,
            Err(refusal) => {
                tracing::debug!(%refusal, "DTLS handshake refused");
                shared.close_requested.store(true, Ordering::SeqCst);
                sink(DtlsEvent::Failed(refusal.to_string()));
                return DtlsSession { shared };
            }
        };
        let conn = Arc::new(ChannelConn {
            shared: Arc::clone(&shared),
            sink: Arc::clone(&sink),
            role,
            last_flight: Mutex::new(LastFlight::default()),
            _live: LiveGuard::new(&self.live),
        });
        let config = session_config(&self.cert, role, remote);
        let session = SessionTask {
            conn,
            config,
            role,
            sink,
            permit,
            timeout: self.limits.handshake_timeout,
            sctp: sctp.map(|role| (role, self.data_rate)),
        };
        // If the runtime is already shut down the task is dropped at once, which is fine.
        drop(self.handle.spawn(run_session(session)));
        DtlsSession { shared }
    }

    /// Sessions whose tasks (ours and webrtc-dtls's) have not ended yet.
    pub fn live_sessions(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    /// Handshakes in progress (holding a place under the caps).
    pub fn handshakes_in_progress(&self) -> usize {
        self.gate.in_progress()
    }
}

impl Drop for DtlsRuntime {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("dtls thread panicked");
            }
        }
    }
}

/// A cheap, `Send` handle on one session. Closing it (or dropping it) ends the session's tasks.
pub struct DtlsSession {
    shared: Arc<Shared>,
}

impl DtlsSession {
    /// An incoming DTLS record from the peer. Plaintext alerts never get through (see
    /// [`super::dtls_gate`]).
    pub fn feed(&self, datagram: &[u8]) {
        if datagram.len() > MAX_DATAGRAM_LEN
            || self.shared.close_requested.load(Ordering::SeqCst)
            || has_plaintext_alert(datagram)
        {
            return;
        }
        {
            let mut queue = self.shared.queue();
            if queue.len() >= INBOUND_QUEUE_LIMIT {
                return;
            }
            queue.push_back(datagram.to_vec());
        }
        self.shared.inbound.notify_one();
    }

    /// Queues a data-channel message for the session's SCTP association; false (counted)
    /// when its bounded outbox is full. Without SCTP it waits in the outbox until dropped.
    pub fn send_sctp(&self, outgoing: Outgoing) -> bool {
        if self.shared.close_requested.load(Ordering::SeqCst) {
            return false;
        }
        self.shared.sctp_out.push(outgoing)
    }

    /// Idempotent; also on Drop.
    pub fn close(&self) {
        if !self.shared.close_requested.swap(true, Ordering::SeqCst) {
            self.shared.close.notify_one();
        }
    }
}

impl Drop for DtlsSession {
    fn drop(&mut self) {
        self.close();
    }
}

/// State shared by the session handle (worker side) and the session's tasks (dtls thread).
#[derive(Default)]
struct Shared {
    inbound_queue: Mutex<VecDeque<Vec<u8>>>,
    inbound: Notify,
    /// Set by the session handle; the session task then closes the DTLS connection.
    close_requested: AtomicBool,
    close: Notify,
    /// Set once the conn is closed: recv() errors from then on.
    conn_closed: AtomicBool,
    handshake_done: AtomicBool,
    /// Data-channel messages the worker queued for this transport's consumers.
    sctp_out: SctpOutbox,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, VecDeque<Vec<u8>>> {
        self.inbound_queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

struct LiveGuard(Arc<AtomicUsize>);

impl LiveGuard {
    fn new(live: &Arc<AtomicUsize>) -> Self {
        live.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(live))
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Our last handshake flight (from the ChangeCipherSpec on), kept to answer a peer that
/// retransmits its final flight because ours was lost: webrtc-dtls stops its handshake loop as
/// soon as it has sent its last flight and never answers such retransmissions itself.
#[derive(Default)]
struct LastFlight {
    datagrams: Vec<Vec<u8>>,
    last_replay: Option<Instant>,
}

/// The datagram transport webrtc-dtls runs over: a bounded queue in, the sink out.
/// Held by webrtc-dtls's tasks, so its drop (and its `LiveGuard`) proves they have ended.
struct ChannelConn {
    shared: Arc<Shared>,
    sink: DtlsSink,
    role: DtlsRole,
    last_flight: Mutex<LastFlight>,
    _live: LiveGuard,
}

impl ChannelConn {
    fn last_flight(&self) -> MutexGuard<'_, LastFlight> {
        self.last_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn record_outgoing(&self, datagram: &[u8]) {
        if self.shared.handshake_done.load(Ordering::SeqCst) {
            return;
        }
        let mut flight = self.last_flight();
        if has_record_type(datagram, CONTENT_TYPE_CHANGE_CIPHER_SPEC) {
            flight.datagrams.clear();
            flight.datagrams.push(datagram.to_vec());
        } else if !flight.datagrams.is_empty() {
            flight.datagrams.push(datagram.to_vec());
        }
    }

    /// The server sends the last flight; if the client retransmits its flight after we are done,
    /// ours was lost: send it again (RFC 6347 §4.2.4).
    fn answer_retransmission(&self, datagram: &[u8]) {
        if self.role != DtlsRole::Server
            || !self.shared.handshake_done.load(Ordering::SeqCst)
            || !has_record_type(datagram, CONTENT_TYPE_HANDSHAKE)
        {
            return;
        }
        let replay = {
            let mut flight = self.last_flight();
            let now = Instant::now();
            let due = flight
                .last_replay
                .is_none_or(|at| now.duration_since(at) >= LAST_FLIGHT_REPLAY_INTERVAL);
            if !due || flight.datagrams.is_empty() {
                return;
            }
            flight.last_replay = Some(now);
            flight.datagrams.clone()
        };
        for datagram in replay {
            (self.sink)(DtlsEvent::Transmit(datagram));
        }
    }
}

#[async_trait]
impl Conn for ChannelConn {
    async fn connect(&self, _addr: SocketAddr) -> dtls_util::Result<()> {
        Ok(())
    }

    /// Stays pending while nothing is queued; errors only once closed (webrtc-dtls's read loop
    /// re-polls at once on every error).
    async fn recv(&self, buf: &mut [u8]) -> dtls_util::Result<usize> {
        loop {
            if self.shared.conn_closed.load(Ordering::SeqCst) {
                return Err(dtls_util::Error::ErrUseClosedNetworkConn);
            }
            let next = self.shared.queue().pop_front();
            if let Some(datagram) = next {
                if datagram.len() > buf.len() {
                    continue;
                }
                buf[..datagram.len()].copy_from_slice(&datagram);
                self.answer_retransmission(&datagram);
                return Ok(datagram.len());
            }
            self.shared.inbound.notified().await;
        }
    }

    async fn recv_from(&self, buf: &mut [u8]) -> dtls_util::Result<(usize, SocketAddr)> {
        let n = self.recv(buf).await?;
        Ok((n, unspecified_addr()))
    }

    async fn send(&self, buf: &[u8]) -> dtls_util::Result<usize> {
        self.record_outgoing(buf);
        (self.sink)(DtlsEvent::Transmit(buf.to_vec()));
        Ok(buf.len())
    }

    async fn send_to(&self, buf: &[u8], _target: SocketAddr) -> dtls_util::Result<usize> {
        self.send(buf).await
    }

    fn local_addr(&self) -> dtls_util::Result<SocketAddr> {
        Ok(unspecified_addr())
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        None
    }

    async fn close(&self) -> dtls_util::Result<()> {
        self.shared.conn_closed.store(true, Ordering::SeqCst);
        self.shared.inbound.notify_one();
        Ok(())
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

fn unspecified_addr() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
}

/// Whether any DTLS record in `datagram` has content type `content_type`.
fn has_record_type(datagram: &[u8], content_type: u8) -> bool {
    let mut rest = datagram;
    while rest.len() >= RECORD_HEADER_LEN {
        if rest[0] == content_type {
            return true;
        }
        let len = usize::from(u16::from_be_bytes([rest[11], rest[12]]));
        rest = rest.get(RECORD_HEADER_LEN + len..).unwrap_or(&[]);
    }
    false
}

fn session_config(
    cert: &DtlsCertificate,
    role: DtlsRole,
    remote: Vec<RemoteFingerprint>,
) -> Config {
    Config {
        certificates: vec![cert.certificate.clone()],
        srtp_protection_profiles: SrtpProfileId::PREFERENCE
            .iter()
            .map(|p| p.to_dtls())
            .collect(),
        extended_master_secret: ExtendedMasterSecretType::Require,
        client_auth: match role {
            DtlsRole::Server => ClientAuthType::RequireAnyClientCert,
            DtlsRole::Client => ClientAuthType::NoClientCert,
        },
        // Peers use self-signed certificates: trust comes from the signalled fingerprints.
        insecure_skip_verify: true,
        verify_peer_certificate: Some(Arc::new(move |certs: &[Vec<u8>], _| {
            let leaf = certs
                .first()
                .ok_or_else(|| webrtc_dtls::Error::Other("peer sent no certificate".to_owned()))?;
            if remote.iter().any(|fingerprint| fingerprint.matches(leaf)) {
                Ok(())
            } else {
                Err(webrtc_dtls::Error::Other(
                    "peer certificate does not match the signalled fingerprint".to_owned(),
                ))
            }
        })),
        server_name: "sfu".to_owned(),
        ..Default::default()
    }
}

/// What one session task needs; the permit is held until the handshake ends.
struct SessionTask {
    conn: Arc<ChannelConn>,
    config: Config,
    role: DtlsRole,
    sink: DtlsSink,
    permit: HandshakePermit,
    timeout: Duration,
    sctp: Option<(SctpRole, DataRate)>,
}

async fn run_session(task: SessionTask) {
    let SessionTask {
        conn,
        config,
        role,
        sink,
        permit,
        timeout,
        sctp,
    } = task;
    let shared = Arc::clone(&conn.shared);
    let dtls_conn: Arc<dyn Conn + Send + Sync> = conn.clone();
    drop(conn);
    let close_requested = async {
        if !shared.close_requested.load(Ordering::SeqCst) {
            shared.close.notified().await;
        }
    };
    tokio::pin!(close_requested);

    let handshake = tokio::time::timeout(
        timeout,
        DTLSConn::new(
            Arc::clone(&dtls_conn),
            config,
            role == DtlsRole::Client,
            None,
        ),
    );
    let outcome = tokio::select! {
        _ = &mut close_requested => None,
        result = handshake => Some(result),
    };
    let connection = match outcome {
        None => {
            // Dropping the handshake future dropped the DTLSConn, which stops its tasks.
            let _ = dtls_conn.close().await;
            sink(DtlsEvent::Closed);
            return;
        }
        Some(Err(_elapsed)) => {
            let _ = dtls_conn.close().await;
            sink(DtlsEvent::Failed("handshake timeout".to_owned()));
            return;
        }
        Some(Ok(Err(err))) => {
            let _ = dtls_conn.close().await;
            sink(DtlsEvent::Failed(err.to_string()));
            return;
        }
        Some(Ok(Ok(connection))) => connection,
    };
    drop(permit);
    shared.handshake_done.store(true, Ordering::SeqCst);

    match export_keying_material(&connection, role).await {
        Ok(keys) => sink(DtlsEvent::Connected(keys)),
        Err(reason) => {
            let _ = connection.close().await;
            sink(DtlsEvent::Failed(reason));
            return;
        }
    }

    let connection = Arc::new(connection);
    if let Some((sctp_role, rate)) = sctp {
        let dtls: Arc<dyn Conn + Send + Sync> = connection.clone();
        tokio::select! {
            _ = &mut close_requested => {
                let _ = connection.close().await;
                sink(DtlsEvent::Closed);
                return;
            }
            _ = super::sctp::run_association(dtls, sctp_role, &shared.sctp_out, &sink, rate) => {}
        }
    }

    // Keep the connection alive (and its reader answering) until closed by us or by the peer.
    // Application data (without SCTP, or after its association ended) is read and dropped.
    let mut buf = vec![0u8; 8192];
    loop {
        tokio::select! {
            _ = &mut close_requested => break,
            read = connection.read(&mut buf, None) => {
                if let Err(err) = read {
                    tracing::debug!(%err, "dtls session ended by the peer");
                    break;
                }
            }
        }
    }
    let _ = connection.close().await;
    sink(DtlsEvent::Closed);
}

async fn export_keying_material(
    connection: &DTLSConn,
    role: DtlsRole,
) -> Result<DtlsKeyingMaterial, String> {
    let negotiated = connection.selected_srtpprotection_profile();
    let profile = SrtpProfileId::from_dtls(negotiated)
        .ok_or_else(|| format!("no SRTP profile negotiated ({negotiated:?})"))?;
    let state = connection.connection_state().await;
    let material = state
        .export_keying_material(SRTP_EXPORTER_LABEL, &[], profile.material_len())
        .await
        .map_err(|e| format!("exporting SRTP keys failed: {e}"))?;
    Ok(DtlsKeyingMaterial {
        profile,
        material,
        role,
    })
}

#[cfg(test)]
#[path = "dtls_tests.rs"]
mod tests;
