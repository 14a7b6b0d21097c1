//! TLS with rustls (the `tls` feature, on by default): a server certificate
//! that can be reloaded while sessions stay up, and a client connector that
//! trusts a PEM bundle of CA certificates.
//!
//! Sessions run the same framing inside TLS as outside it; only the stream
//! under the session changes (see [`Stream`]).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

use crate::Stream;

/// Why a certificate, key or CA bundle could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("{path}: {source}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: rustls_pki_types::pem::Error,
    },
    /// The file holds no certificate.
    #[error("{0}: no certificate found")]
    NoCertificate(PathBuf),
    /// rustls refused the certificate, key or bundle (for example, a key
    /// that does not match the certificate).
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
    /// The name to check the server's certificate against is not a DNS name
    /// or an IP address.
    #[error("invalid server name {0:?}")]
    ServerName(String),
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |source| TlsError::Pem {
        path: path.to_owned(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_owned()));
    }
    Ok(certs)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificate a TLS listener presents, from a PEM certificate chain
/// and a PEM private key. Cheap to clone; every clone sees a
/// [`reload`](Self::reload).
#[derive(Clone)]
pub struct TlsAcceptor(Arc<AcceptorInner>);

struct AcceptorInner {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<rustls::ServerConfig>>,
}

impl fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("cert", &self.0.cert)
            .field("key", &self.0.key)
            .finish_non_exhaustive()
    }
}

impl TlsAcceptor {
    /// Loads the certificate chain (leaf first) and the private key
    /// (PKCS#8, PKCS#1 or SEC1).
    ///
    /// # Errors
    /// If either file cannot be read or parsed, or the key does not match
    /// the certificate.
    pub fn from_pem_files(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Result<Self, TlsError> {
        let (cert, key) = (cert.into(), key.into());
        let config = Self::load(&cert, &key)?;
        Ok(Self(Arc::new(AcceptorInner {
            cert,
            key,
            current: RwLock::new(config),
        })))
    }

    /// Reads the files again and presents the new certificate to
    /// connections accepted from now on. Sessions already up keep theirs.
    /// On error the current certificate stays.
    ///
    /// # Errors
    /// As [`from_pem_files`](Self::from_pem_files).
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = Self::load(&self.0.cert, &self.0.key)?;
        *self.0.current.write().unwrap_or_else(|e| e.into_inner()) = config;
        tracing::info!(cert = %self.0.cert.display(), "TLS certificate reloaded");
        Ok(())
    }

    fn load(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let chain = certs(cert)?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Pem {
            path: key.to_owned(),
            source,
        })?;
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        Ok(Arc::new(config))
    }

    pub(crate) async fn accept(&self, tcp: TcpStream) -> io::Result<Stream> {
        let config = self.0.current.read().unwrap_or_else(|e| e.into_inner()).clone();
        let tls = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await?;
        Ok(Stream::Tls(Box::new(tls.into())))
    }
}

/// What a TLS client trusts and which name it expects the server's
/// certificate to carry. Cheap to clone.
#[derive(Clone)]
pub struct TlsConnector {
    config: Arc<rustls::ClientConfig>,
    server_name: ServerName<'static>,
}

impl fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConnector")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl TlsConnector {
    /// Trusts the CA certificates in the PEM file `ca` (a self-signed
    /// server certificate can be its own CA; the system bundle is usually
    /// `/etc/ssl/certs/ca-certificates.crt`) and expects `server_name` (a
    /// DNS name or an IP address) in the server's certificate.
    ///
    /// # Errors
    /// If the file cannot be read, holds no usable certificate, or the name
    /// is invalid.
    pub fn from_ca_file(ca: &Path, server_name: &str) -> Result<Self, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        let (added, _ignored) = roots.add_parsable_certificates(certs(ca)?);
        if added == 0 {
            return Err(TlsError::NoCertificate(ca.to_owned()));
        }
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server_name = ServerName::try_from(server_name.to_owned())
            .map_err(|_| TlsError::ServerName(server_name.to_owned()))?;
        Ok(Self {
            config: Arc::new(config),
            server_name,
        })
    }

    /// Runs the TLS handshake over a connected socket.
    ///
    /// # Errors
    /// If the handshake fails, for example because the server's certificate
    /// is not trusted or does not carry the expected name.
    pub async fn connect(&self, tcp: TcpStream) -> io::Result<Stream> {
        let tls = tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(self.server_name.clone(), tcp)
            .await?;
        Ok(Stream::Tls(Box::new(tls.into())))
    }
}
