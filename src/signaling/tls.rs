//! HTTPS/WSS on the listen port: the rustls server configuration built from the
//! `tls_cert` / `tls_key` PEM files, with start-up errors that name the file and the fix.
//!
//! The edge wraps each accepted socket in a `rustls::ServerConnection` (see
//! `edge/stream.rs`); this module only loads and checks the files, once, at start-up.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read TLS {what} file {path}: {source} (check the path and that the server's user may read it)")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("TLS certificate file {0} holds no PEM certificate (expected `-----BEGIN CERTIFICATE-----`; with Let's Encrypt use fullchain.pem)")]
    NoCertificate(PathBuf),
    #[error("TLS certificate file {path} is not valid PEM: {detail}")]
    BadCertificate { path: PathBuf, detail: String },
    #[error("TLS key file {0} holds no PEM private key (expected `-----BEGIN PRIVATE KEY-----`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`; with Let's Encrypt use privkey.pem)")]
    NoKey(PathBuf),
    #[error("TLS key file {path} is not valid PEM: {detail}")]
    BadKey { path: PathBuf, detail: String },
    #[error("TLS key {key} does not match certificate {cert}: {detail} (give the key the certificate was issued for)")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        detail: String,
    },
}

/// Reads and checks the certificate chain and key; the result is shared by every connection.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let read = |what, path: &Path| {
        std::fs::read(path).map_err(|source| TlsSetupError::Read {
            what,
            path: path.to_path_buf(),
            source,
        })
    };
    let cert_pem = read("certificate", cert)?;
    let key_pem = read("key", key)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsSetupError::BadCertificate {
            path: cert.to_path_buf(),
            detail: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsSetupError::NoCertificate(cert.to_path_buf()));
    }
    let private_key = match PrivateKeyDer::from_pem_slice(&key_pem) {
        Ok(k) => k,
        Err(pem::Error::NoItemsFound) => return Err(TlsSetupError::NoKey(key.to_path_buf())),
        Err(e) => {
            return Err(TlsSetupError::BadKey {
                path: key.to_path_buf(),
                detail: e.to_string(),
            })
        }
    };
    let mismatch = |e: rustls::Error| TlsSetupError::Mismatch {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        detail: e.to_string(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // `with_single_cert` parses the key and checks it against the end-entity certificate
    // (`CertifiedKey::keys_match`): a key of another certificate is refused here.
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(mismatch)?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(mismatch)?;
    // HTTP/1.1 only (the edge speaks nothing else; WebSocket needs it).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
