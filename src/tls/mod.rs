//! TLS for STARTTLS and implicit TLS: the server certificate and the rustls
//! configuration, plus the ClientHello fingerprints recorded as evidence
//! and those of the ServerHello we answered with.
//!
//! Without a configured certificate, one is made at first start and kept in
//! the state directory, so that it stays the same across restarts (a
//! certificate that changes at every restart is a honeypot tell). Its
//! subject is just `CN=<hostname>`, like the snakeoil certificate of a stock
//! Debian mail server.

pub mod client_hello;
pub mod server_hello;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateSource {
    /// PEM files given by the operator.
    Files { cert: PathBuf, key: PathBuf },
    /// Made once and kept in this directory (`cert.pem`, `key.pem`).
    Generated {
        state_dir: PathBuf,
        hostname: String,
    },
}

/// Builds the server configuration. The error says which file and why.
pub fn server_config(source: &CertificateSource) -> Result<Arc<ServerConfig>, String> {
    let (cert_path, key_path) = match source {
        CertificateSource::Files { cert, key } => (cert.clone(), key.clone()),
        CertificateSource::Generated {
            state_dir,
            hostname,
        } => ensure_generated(state_dir, hostname)?,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| format!("cannot read certificate {}: {e}", cert_path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad certificate {}: {e}", cert_path.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate in {}", cert_path.display()));
    }
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| format!("cannot read private key {}: {e}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key do not match: {e}"))?;
    Ok(Arc::new(config))
}

/// Makes `cert.pem` and `key.pem` in `state_dir` unless they exist.
fn ensure_generated(state_dir: &Path, hostname: &str) -> Result<(PathBuf, PathBuf), String> {
    let cert = state_dir.join("cert.pem");
    let key = state_dir.join("key.pem");
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    crate::spool::writer::create_dirs(state_dir)
        .map_err(|e| format!("cannot create state directory {}: {e}", state_dir.display()))?;
    // A key without its certificate: a start killed between the two. The
    // key was never served; it is set aside (never deleted) and a new pair made.
    if key.exists() && !cert.exists() {
        let aside = state_dir.join(format!(
            "key.pem.unused-{}",
            time::OffsetDateTime::now_utc().unix_timestamp_nanos()
        ));
        std::fs::rename(&key, &aside)
            .map_err(|e| format!("cannot set aside {}: {e}", key.display()))?;
    }
    let mut params = rcgen::CertificateParams::new(vec![hostname.to_string()])
        .map_err(|e| format!("cannot make a certificate for {hostname}: {e}"))?;
    let mut name = rcgen::DistinguishedName::new();
    name.push(rcgen::DnType::CommonName, hostname);
    params.distinguished_name = name;
    // Ten years from now, like Debian's make-ssl-cert.
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(3650);
    let key_pair = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let certificate = params.self_signed(&key_pair).map_err(|e| e.to_string())?;
    write_new(&key, key_pair.serialize_pem().as_bytes())?;
    write_new(&cert, certificate.pem().as_bytes())?;
    tracing::info!(
        "made a self-signed certificate for {hostname} in {}",
        state_dir.display()
    );
    Ok((cert, key))
}

/// Writes a whole file under a temporary name, then renames it into place,
/// so that a kill never leaves half a PEM file behind.
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(format!(".tmp-{}", std::process::id()));
    let temp = PathBuf::from(temp);
    let mut file = crate::spool::writer::create_new(&temp)
        .map_err(|e| format!("cannot create {}: {e}", temp.display()))?;
    file.write_all(bytes)
        .and_then(|_| file.sync_all())
        .and_then(|_| std::fs::rename(&temp, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
