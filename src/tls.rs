//! HTTPS: the rustls server configuration behind `--tls-cert`/`--tls-key` or
//! `--tls-self-signed`.
//!
//! Browsers speak HTTP/2 only over TLS, and over HTTP/1.1 they open at most six connections
//! per origin, so a page with a seventh EventSource stalls. With TLS the server offers ALPN
//! `h2` and `http/1.1`: browsers pick `h2` and multiplex their streams over one connection,
//! while HTTP/1.1 clients keep the direct write path of [`crate::direct`]. rustls with the
//! `ring` provider needs neither OpenSSL nor a C build tool chain beyond a C compiler.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// Names the self-signed certificate is valid for: what a browser on this machine dials.
pub const SELF_SIGNED_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// ALPN protocols offered, in the server's order of preference.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Why TLS could not be set up; each message names the flag or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("--tls-cert {path}: {source}")]
    ReadCert {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--tls-key {path}: {source}")]
    ReadKey {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--tls-cert {0}: no PEM certificate in the file")]
    NoCert(PathBuf),
    #[error("--tls-cert {path}: bad PEM: {message}")]
    BadCert { path: PathBuf, message: String },
    #[error("--tls-key {0}: no PEM private key (PKCS#8, PKCS#1 or SEC1) in the file")]
    NoKey(PathBuf),
    #[error("--tls-key {path}: bad PEM: {message}")]
    BadKey { path: PathBuf, message: String },
    #[error("--tls-cert {cert} and --tls-key {key} do not fit together: {message}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        message: String,
    },
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(String),
}

/// A ready TLS server configuration, shared by every connection.
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
    /// SHA-256 of the leaf certificate (DER), as colon-separated upper-case hex.
    pub fingerprint: String,
    /// The generated certificate in PEM, when `--tls-self-signed` made one.
    pub self_signed_pem: Option<String>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("fingerprint", &self.fingerprint)
            .field("self_signed", &self.self_signed_pem.is_some())
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Loads a certificate chain and its private key from PEM files.
    ///
    /// # Errors
    /// An unreadable file, a file without the expected PEM block, or a key that does not
    /// belong to the certificate.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Tls, TlsError> {
        let cert_pem = std::fs::read(cert).map_err(|source| TlsError::ReadCert {
            path: cert.to_owned(),
            source,
        })?;
        let key_pem = std::fs::read(key).map_err(|source| TlsError::ReadKey {
            path: key.to_owned(),
            source,
        })?;
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::BadCert {
                path: cert.to_owned(),
                message: e.to_string(),
            })?;
        if chain.is_empty() {
            return Err(TlsError::NoCert(cert.to_owned()));
        }
        let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey(key.to_owned()),
            e => TlsError::BadKey {
                path: key.to_owned(),
                message: e.to_string(),
            },
        })?;
        Tls::new(chain, private, None).map_err(|message| TlsError::Mismatch {
            cert: cert.to_owned(),
            key: key.to_owned(),
            message,
        })
    }

    /// Generates a certificate for [`SELF_SIGNED_NAMES`], for local use: browsers warn about
    /// it, and its fingerprint (logged at start-up) is what to compare.
    ///
    /// # Errors
    /// Key generation failed.
    pub fn self_signed() -> Result<Tls, TlsError> {
        let names: Vec<String> = SELF_SIGNED_NAMES.iter().map(|n| n.to_string()).collect();
        let generated = rcgen::generate_simple_self_signed(names)
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        let pem = generated.cert.pem();
        let cert = generated.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(generated.key_pair.serialize_der().into());
        Tls::new(vec![cert], key, Some(pem)).map_err(TlsError::Generate)
    }

    fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        self_signed_pem: Option<String>,
    ) -> Result<Tls, String> {
        let fingerprint = sha256_fingerprint(&chain[0]);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| e.to_string())?;
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            fingerprint,
            self_signed_pem,
        })
    }

    /// The acceptor that runs the handshake on a new connection.
    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }
}

/// `AB:CD:...`: the SHA-256 of `cert`, as browsers show it.
pub fn sha256_fingerprint(cert: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert);
    let mut out = String::with_capacity(95);
    for (i, byte) in digest.as_ref().iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push_str(&format!("{byte:02X}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap();
        path
    }

    #[test]
    fn self_signed_offers_h2_and_http11() {
        let tls = Tls::self_signed().unwrap();
        assert_eq!(tls.fingerprint.len(), 95);
        assert!(tls
            .self_signed_pem
            .as_deref()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(
            tls.acceptor.config().alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }

    #[test]
    fn bad_pem_files_are_named_in_the_error() {
        let dir = std::env::temp_dir().join(format!("tickcast-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let cert = write(&dir, "cert.pem", &good.cert.pem());
        let key = write(&dir, "key.pem", &good.key_pair.serialize_pem());
        let other_key = write(&dir, "other.pem", &other.key_pair.serialize_pem());
        let junk = write(&dir, "junk.pem", "not a pem file\n");
        let missing = dir.join("missing.pem");

        assert!(Tls::from_pem_files(&cert, &key).is_ok());
        let cases = [
            (&missing, &key, "--tls-cert"),
            (&cert, &missing, "--tls-key"),
            (&junk, &key, "no PEM certificate"),
            (&key, &key, "no PEM certificate"),
            (&cert, &junk, "no PEM private key"),
            (&cert, &cert, "no PEM private key"),
            (&cert, &other_key, "do not fit together"),
        ];
        for (c, k, needle) in cases {
            let err = Tls::from_pem_files(c, k).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn fingerprints_are_colon_separated_upper_hex() {
        let f = sha256_fingerprint(b"abc");
        assert!(f.starts_with("BA:78:16:BF:"), "{f}");
        assert!(f.ends_with(":15:AD"), "{f}");
    }
}
