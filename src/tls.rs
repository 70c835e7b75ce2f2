//! TLS to a TCP endpoint, set up the way the docker CLI sets it up.
//!
//! With verification (`--tlsverify`, `DOCKER_TLS_VERIFY`, a context without
//! `SkipTLSVerify`) the server must present a certificate for the host that
//! chains to the CA file, or to the system's roots when there is no CA file
//! (a context without `ca.pem`). Without verification (`--tls` alone, a
//! context's `SkipTLSVerify`) the connection is encrypted but the server's
//! certificate is not checked, like the CLI's `InsecureSkipVerify`; handshake
//! signatures are still checked. Either way the client certificate and key
//! are presented when both are given.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{self, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::{self, ClientConfig, DigitallySignedStruct, RootCertStore};

use crate::endpoint::Tls;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the {what} {path}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the {what} {path} holds no usable PEM data")]
    Pem {
        what: &'static str,
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("the CA certificate {path} is not a valid certificate")]
    BadCa {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("TLS client authentication needs both a certificate and a key: {missing} is missing")]
    HalfClientAuth { missing: &'static str },
    #[error("the client certificate and key cannot be used together")]
    ClientAuth { source: rustls::Error },
    #[error("no trusted CA: give --tlscacert, or add the system's CA certificates")]
    NoRoots,
    #[error("cannot set up TLS")]
    Setup { source: rustls::Error },
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(crypto::ring::default_provider())
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_error = |source| TlsError::Pem {
        what,
        path: path.to_owned(),
        source,
    };
    let certs = CertificateDer::pem_slice_iter(&read(what, path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error)?;
    if certs.is_empty() {
        return Err(pem_error(rustls::pki_types::pem::Error::NoItemsFound));
    }
    Ok(certs)
}

fn roots(ca: Option<&Path>) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(path) => {
            for cert in certificates("CA certificate", path)? {
                roots.add(cert).map_err(|source| TlsError::BadCa {
                    path: path.to_owned(),
                    source,
                })?;
            }
        }
        None => {
            // Unreadable system certificates are skipped, as Go does.
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
        }
    }
    if roots.is_empty() {
        return Err(TlsError::NoRoots);
    }
    Ok(roots)
}

/// The client configuration for `tls`.
pub fn client_config(tls: &Tls) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Setup { source })?;
    let builder = if tls.verify {
        builder.with_root_certificates(roots(tls.ca.as_deref())?)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SkipServerVerification(provider)))
    };
    let mut config = match (&tls.cert, &tls.key) {
        (None, None) => builder.with_no_client_auth(),
        (Some(_), None) => return Err(TlsError::HalfClientAuth { missing: "the key" }),
        (None, Some(_)) => {
            return Err(TlsError::HalfClientAuth {
                missing: "the certificate",
            })
        }
        (Some(cert), Some(key)) => {
            let chain = certificates("client certificate", cert)?;
            let key =
                PrivateKeyDer::from_pem_slice(&read("client key", key)?).map_err(|source| {
                    TlsError::Pem {
                        what: "client key",
                        path: key.to_owned(),
                        source,
                    }
                })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|source| TlsError::ClientAuth { source })?
        }
    };
    // Every connection makes a full handshake, as the docker CLI's do (Go
    // keeps no session cache unless asked): some TLS fronts refuse resumed
    // sessions of clients that present a certificate.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// The name the server's certificate must carry: a DNS name or an IP address.
pub fn server_name(host: &str) -> Option<ServerName<'static>> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_owned()).ok()
}

/// Whether a failed TLS connection failed on a certificate, ours or the
/// server's, rather than on the network.
pub fn is_certificate_problem(err: &std::io::Error) -> bool {
    use rustls::AlertDescription as A;
    let Some(err) = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    else {
        return false;
    };
    matches!(
        err,
        rustls::Error::InvalidCertificate(_)
            | rustls::Error::NoCertificatesPresented
            | rustls::Error::AlertReceived(
                A::BadCertificate
                    | A::UnsupportedCertificate
                    | A::CertificateRevoked
                    | A::CertificateExpired
                    | A::CertificateUnknown
                    | A::UnknownCA
                    | A::CertificateRequired
                    | A::AccessDenied
            )
    )
}

/// Accepts any server certificate (`--tls` without `--tlsverify`) while
/// still checking that the server holds the key of the one it showed.
#[derive(Debug)]
struct SkipServerVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for SkipServerVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(verify: bool) -> Tls {
        Tls {
            verify,
            ca: None,
            cert: None,
            key: None,
        }
    }

    #[test]
    fn skipping_verification_needs_no_files() {
        assert!(client_config(&tls(false)).is_ok());
    }

    #[test]
    fn missing_files_are_named() {
        let mut t = tls(true);
        t.ca = Some("/nonexistent/ca.pem".into());
        let err = client_config(&t).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
        let mut t = tls(false);
        t.cert = Some("/nonexistent/cert.pem".into());
        assert!(matches!(
            client_config(&t),
            Err(TlsError::HalfClientAuth { missing: "the key" })
        ));
    }

    #[test]
    fn a_file_without_pem_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate\n").unwrap();
        let mut t = tls(true);
        t.ca = Some(ca);
        assert!(matches!(client_config(&t), Err(TlsError::Pem { .. })));
    }

    #[test]
    fn server_names_are_hosts_or_addresses() {
        assert!(matches!(
            server_name("127.0.0.1"),
            Some(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("[::1]"),
            Some(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("docker.example"),
            Some(ServerName::DnsName(_))
        ));
        assert!(server_name("bad host").is_none());
    }
}
