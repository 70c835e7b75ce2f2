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

use super::resolve::Tls;

/// A file of TLS material, and the flag that names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum File {
    Ca,
    Cert,
    Key,
}

impl File {
    fn flag(self) -> &'static str {
        match self {
            File::Ca => "--tlscacert",
            File::Cert => "--tlscert",
            File::Key => "--tlskey",
        }
    }
}

impl std::fmt::Display for File {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            File::Ca => "CA certificate",
            File::Cert => "client certificate",
            File::Key => "client key",
        })
    }
}

/// Why the TLS client could not be set up. Each message quotes its cause
/// itself (none is returned from `source()`): the cause is the point.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the {file} {}: {error}; give the right file with {}", path.display(), file.flag())]
    Read {
        file: File,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("the {file} {} holds no usable PEM data ({error}); give the right file with {}", path.display(), file.flag())]
    Pem {
        file: File,
        path: PathBuf,
        error: rustls::pki_types::pem::Error,
    },
    #[error("the CA certificate {} is not a valid certificate ({error})", path.display())]
    BadCa { path: PathBuf, error: rustls::Error },
    #[error(
        "TLS client authentication needs both a certificate and a key: {missing} is missing; \
         give both --tlscert and --tlskey, or neither"
    )]
    HalfClientAuth { missing: &'static str },
    #[error("the client certificate and key cannot be used together ({error}); check that the key is the certificate's")]
    ClientAuth { error: rustls::Error },
    #[error("no trusted CA: give --tlscacert, or add the system's CA certificates")]
    NoRoots,
    #[error("\"{host}\" is neither a DNS name nor an IP address, so no certificate can be checked against it")]
    ServerName { host: String },
    #[error("cannot set up TLS ({error})")]
    Setup { error: rustls::Error },
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(crypto::ring::default_provider())
}

fn read(file: File, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        file,
        path: path.to_owned(),
        error,
    })
}

fn certificates(file: File, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_error = |error| TlsError::Pem {
        file,
        path: path.to_owned(),
        error,
    };
    let certs = CertificateDer::pem_slice_iter(&read(file, path)?)
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
            for cert in certificates(File::Ca, path)? {
                roots.add(cert).map_err(|error| TlsError::BadCa {
                    path: path.to_owned(),
                    error,
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
        .map_err(|error| TlsError::Setup { error })?;
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
            let chain = certificates(File::Cert, cert)?;
            let key = PrivateKeyDer::from_pem_slice(&read(File::Key, key)?).map_err(|error| {
                TlsError::Pem {
                    file: File::Key,
                    path: key.to_owned(),
                    error,
                }
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|error| TlsError::ClientAuth { error })?
        }
    };
    // Every connection makes a full handshake, as the docker CLI's do (Go
    // keeps no session cache unless asked): some TLS fronts refuse resumed
    // sessions of clients that present a certificate.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// The name the server's certificate must carry: a DNS name or an IP address.
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(host.to_owned()).map_err(|_| TlsError::ServerName {
        host: host.to_owned(),
    })
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
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(server_name("::1"), Ok(ServerName::IpAddress(_))));
        assert!(matches!(
            server_name("docker.example"),
            Ok(ServerName::DnsName(_))
        ));
        assert!(matches!(
            server_name("bad host"),
            Err(TlsError::ServerName { .. })
        ));
    }

    #[test]
    fn every_error_says_its_cause_once() {
        let io = || std::io::Error::from(std::io::ErrorKind::NotFound);
        let tls = || rustls::Error::General("bad".into());
        let path = PathBuf::from("/t/ca.pem");
        for err in [
            TlsError::Read {
                file: File::Ca,
                path: path.clone(),
                error: io(),
            },
            TlsError::Pem {
                file: File::Key,
                path: path.clone(),
                error: rustls::pki_types::pem::Error::NoItemsFound,
            },
            TlsError::BadCa { path, error: tls() },
            TlsError::HalfClientAuth { missing: "the key" },
            TlsError::ClientAuth { error: tls() },
            TlsError::NoRoots,
            TlsError::ServerName { host: "a b".into() },
            TlsError::Setup { error: tls() },
        ] {
            crate::output::assert_causes_said_once(&err);
        }
        let missing = client_config(&Tls {
            verify: true,
            ca: Some("/nonexistent/ca.pem".into()),
            cert: None,
            key: None,
        })
        .unwrap_err()
        .to_string();
        assert!(
            missing.contains("/nonexistent/ca.pem: ") && missing.contains("--tlscacert"),
            "says why and what to do: {missing}"
        );
    }
}
