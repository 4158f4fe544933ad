//! mTLS between nodes (rustls with ring), and a development CA ([`DevCa`], rcgen) that issues
//! node certificates in code.
//!
//! Both ends present a certificate signed by the cluster's CA: the node that accepts checks
//! the dialer's chain, and the dialer checks the acceptor's chain and that its certificate
//! names the node it meant to reach (each node certificate carries its node name as a DNS
//! name). A connection whose certificate does not verify is refused and the refusal logged.
//!
//! Gossip (see `gossip_tls`) uses the same certificates with one difference: its dialer
//! knows a seed only by address, so it checks that the acceptor's certificate chains to the
//! CA but not which node it names.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::error::{Error, Result};

/// PEM certificates and key for one node.
#[derive(Clone)]
pub struct TlsOptions {
    /// The CA that signs every node of the cluster (PEM).
    pub ca_pem: String,
    /// This node's certificate chain (PEM), naming the node.
    pub cert_pem: String,
    /// This node's private key (PEM).
    pub key_pem: String,
}

impl std::fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsOptions").finish_non_exhaustive()
    }
}

impl TlsOptions {
    /// Reads the three PEM files.
    pub fn from_files(
        ca: &std::path::Path,
        cert: &std::path::Path,
        key: &std::path::Path,
    ) -> Result<TlsOptions> {
        let read = |path: &std::path::Path| {
            std::fs::read_to_string(path)
                .map_err(|e| Error::Tls(format!("cannot read {}: {e}", path.display())))
        };
        Ok(TlsOptions {
            ca_pem: read(ca)?,
            cert_pem: read(cert)?,
            key_pem: read(key)?,
        })
    }
}

/// The acceptor and connector built from [`TlsOptions`].
pub(crate) struct Tls {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
    /// For gossip: checks the acceptor's chain, not the name in its certificate.
    gossip_connector: TlsConnector,
}

/// Accepts a server certificate that chains to the cluster's CA, whatever node it names.
#[derive(Debug)]
struct ChainOnly {
    roots: Arc<RootCertStore>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Tls {
    pub(crate) fn new(options: &TlsOptions) -> Result<Tls> {
        let tls_err = |what: &str, e: &dyn std::fmt::Display| Error::Tls(format!("{what}: {e}"));
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(options.ca_pem.as_bytes()) {
            let cert = cert.map_err(|e| tls_err("ca", &e))?;
            roots.add(cert).map_err(|e| tls_err("ca", &e))?;
        }
        if roots.is_empty() {
            return Err(Error::Tls("ca: no certificate in PEM".into()));
        }
        let roots = Arc::new(roots);
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(options.cert_pem.as_bytes())
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| tls_err("certificate", &e))?;
        if chain.is_empty() {
            return Err(Error::Tls("certificate: none in PEM".into()));
        }
        let key = PrivateKeyDer::from_pem_slice(options.key_pem.as_bytes())
            .map_err(|e| tls_err("key", &e))?;
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .map_err(|e| tls_err("client verifier", &e))?;
        let server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_err("server", &e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| tls_err("server certificate", &e))?;
        let gossip_client = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_err("client", &e))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly {
                roots: roots.clone(),
                provider: provider(),
            }))
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .map_err(|e| tls_err("client certificate", &e))?;
        let client = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_err("client", &e))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| tls_err("client certificate", &e))?;
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
            gossip_connector: TlsConnector::from(Arc::new(gossip_client)),
        })
    }

    /// Dials a gossip peer known by address: its certificate must chain to the CA.
    pub(crate) async fn connect_gossip(
        &self,
        addr: std::net::SocketAddr,
        tcp: TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let name = ServerName::IpAddress(addr.ip().into());
        self.gossip_connector
            .connect(name, tcp)
            .await
            .map_err(|e| Error::Connect {
                peer: addr.to_string(),
                reason: format!("tls: {e}"),
            })
    }

    pub(crate) async fn accept(
        &self,
        tcp: TcpStream,
    ) -> Result<tokio_rustls::server::TlsStream<TcpStream>> {
        self.acceptor
            .accept(tcp)
            .await
            .map_err(|e| Error::Tls(format!("accept: {e}")))
    }

    pub(crate) async fn connect(
        &self,
        peer: &str,
        tcp: TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let name = ServerName::try_from(peer.to_owned()).map_err(|e| Error::Connect {
            peer: peer.to_owned(),
            reason: format!("node name is not usable as a certificate name: {e}"),
        })?;
        self.connector
            .connect(name, tcp)
            .await
            .map_err(|e| Error::Connect {
                peer: peer.to_owned(),
                reason: format!("tls: {e}"),
            })
    }
}

/// A development certificate authority generated in memory. Not for production: its key
/// lives only in this process unless you write [`DevCa::key_pem`] out.
pub struct DevCa {
    cert: rcgen::Certificate,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa").finish_non_exhaustive()
    }
}

impl DevCa {
    /// A new self-signed CA named `name`.
    pub fn generate(name: &str) -> Result<DevCa> {
        let err = |e: rcgen::Error| Error::Tls(format!("dev ca: {e}"));
        let key = rcgen::KeyPair::generate().map_err(err)?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).map_err(err)?;
        let issuer = rcgen::Issuer::new(params, key);
        Ok(DevCa { cert, issuer })
    }

    /// The CA certificate (PEM), to trust on every node.
    pub fn ca_pem(&self) -> String {
        self.cert.pem()
    }

    /// The CA's private key (PEM), to issue more certificates elsewhere.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// A certificate and key for `node`, usable as both TLS server and client.
    pub fn issue(&self, node: &str) -> Result<TlsOptions> {
        let err = |e: rcgen::Error| Error::Tls(format!("issue {node}: {e}"));
        let key = rcgen::KeyPair::generate().map_err(err)?;
        let mut params = rcgen::CertificateParams::new(vec![node.to_owned()]).map_err(err)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, node);
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.issuer).map_err(err)?;
        Ok(TlsOptions {
            ca_pem: self.ca_pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}
