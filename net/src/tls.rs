//! Mutual TLS between nodes: the cluster CA, node certificates, and the
//! rustls configurations quinn uses.
//!
//! Every node holds a certificate signed by the cluster CA whose subject
//! alternative name is `node-<id>.weir` (and whose common name says the same
//! in words). Both directions are verified against the CA:
//!
//! * the client (follower) connects with server name `node-<leader>.weir`, so
//!   rustls proves the server is the node it meant to reach;
//! * the server (leader) requires a client certificate chaining to the CA and
//!   reads the client's node id from it (`peer_node_id`).
//!
//! `DevCa` is the development CA `weir dev` uses: its certificate and key are
//! PEM files in one directory, created once and loaded on every later start
//! (regenerating would orphan every node certificate already issued).
//! Production clusters bring their own CA files in the same layout.
//!
//! Files in the CA directory:
//!
//! ```text
//! ca.pem              CA certificate (the trust anchor every node loads)
//! ca.key.pem          CA private key (only where certificates are issued)
//! node-<id>.pem       node certificate, signed by the CA
//! node-<id>.key.pem   node private key
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use weir_proto::NodeId;

/// ALPN protocol id of node-to-node traffic; a peer speaking anything else is
/// refused during the handshake.
pub const ALPN: &[u8] = b"weir-node/1";

const CA_CERT_FILE: &str = "ca.pem";
const CA_KEY_FILE: &str = "ca.key.pem";

/// Controller members' certificates name node ids from here up (quorum
/// member `m` is node `CONTROLLER_NODE_ID_MIN + m`, a single-process
/// controller node `CONTROLLER_NODE_ID_MIN`); storage nodes' ids stay below.
pub const CONTROLLER_NODE_ID_MIN: i32 = 1_000_000;

/// The server name a node dials a controller with (`controller_client_config`
/// ignores it and checks the certificate's own controller name instead).
pub const CONTROLLER_SERVER_NAME: &str = "controller.weir";

/// The DNS name a node's certificate carries and a client asks for.
pub fn node_server_name(node: NodeId) -> String {
    format!("node-{}.weir", node.0)
}

fn ring() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The development CA: issues node certificates. Owned by whoever provisions
/// nodes (`weir dev`, tests); nodes themselves only need `TrustRoots`.
pub struct DevCa {
    dir: PathBuf,
    /// As on disk: the trust anchor handed to nodes.
    cert_pem: String,
    /// Rebuilt from the PEM on load; used only as the issuer when signing
    /// (same name and key as the file, so what it signs chains to the file).
    issuer: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl DevCa {
    /// Loads the CA from `dir`, or creates it there (and the directory) when
    /// `ca.pem` does not exist yet.
    pub fn load_or_create(dir: &Path) -> anyhow::Result<DevCa> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        if cert_path.exists() {
            let cert_pem = std::fs::read_to_string(&cert_path)
                .with_context(|| format!("reading {}", cert_path.display()))?;
            let key_pem = std::fs::read_to_string(&key_path)
                .with_context(|| format!("reading {}", key_path.display()))?;
            let key = rcgen::KeyPair::from_pem(&key_pem)
                .with_context(|| format!("parsing {}", key_path.display()))?;
            let params = rcgen::CertificateParams::from_ca_cert_pem(&cert_pem)
                .with_context(|| format!("parsing {}", cert_path.display()))?;
            let issuer = params.self_signed(&key).context("rebuilding the CA issuer")?;
            return Ok(DevCa { dir: dir.to_path_buf(), cert_pem, issuer, key });
        }
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let key = rcgen::KeyPair::generate().context("generating the CA key")?;
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "Weir");
        params.distinguished_name.push(rcgen::DnType::CommonName, "Weir development CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = params.self_signed(&key).context("self-signing the CA")?;
        let cert_pem = issuer.pem();
        write_new(&key_path, &key.serialize_pem(), true)?;
        write_new(&cert_path, &cert_pem, false)?;
        Ok(DevCa { dir: dir.to_path_buf(), cert_pem, issuer, key })
    }

    /// The CA certificate as nodes trust it.
    pub fn trust_roots(&self) -> anyhow::Result<TrustRoots> {
        TrustRoots::from_pem(self.cert_pem.as_bytes())
    }

    /// A fresh certificate for `node`, not written anywhere.
    pub fn issue(&self, node: NodeId) -> anyhow::Result<NodeIdentity> {
        let (cert_pem, key_pem) = self.issue_pem(node)?;
        NodeIdentity::from_pem(node, cert_pem.as_bytes(), key_pem.as_bytes())
    }

    /// The certificate of `node` from the CA directory, issuing and writing it
    /// on first use.
    pub fn load_or_issue(&self, node: NodeId) -> anyhow::Result<NodeIdentity> {
        let (cert_path, key_path) = node_files(&self.dir, node);
        if !cert_path.exists() {
            let (cert_pem, key_pem) = self.issue_pem(node)?;
            write_new(&key_path, &key_pem, true)?;
            write_new(&cert_path, &cert_pem, false)?;
        }
        NodeIdentity::load(&self.dir, node)
    }

    fn issue_pem(&self, node: NodeId) -> anyhow::Result<(String, String)> {
        if node.0 < 0 {
            bail!("node id {node} is negative");
        }
        let key = rcgen::KeyPair::generate().context("generating a node key")?;
        let mut params = rcgen::CertificateParams::new(vec![node_server_name(node)])
            .context("node certificate parameters")?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "Weir");
        params.distinguished_name.push(rcgen::DnType::CommonName, format!("weir node {}", node.0));
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        // One certificate serves both sides: a node is a server to its
        // followers and a client of its leaders.
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert =
            params.signed_by(&key, &self.issuer, &self.key).context("signing a node cert")?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

fn node_files(dir: &Path, node: NodeId) -> (PathBuf, PathBuf) {
    (dir.join(format!("node-{}.pem", node.0)), dir.join(format!("node-{}.key.pem", node.0)))
}

/// Writes a file that must not exist yet; private keys are readable by the
/// owner only.
fn write_new(path: &Path, contents: &str, private: bool) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true).mode(if private { 0o600 } else { 0o644 });
    let mut file = options.open(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    file.sync_all().with_context(|| format!("syncing {}", path.display()))?;
    Ok(())
}

/// The CA certificates a node trusts, for both directions. Immutable after
/// load; shared by the server and client configs.
#[derive(Clone)]
pub struct TrustRoots {
    store: Arc<rustls::RootCertStore>,
}

impl TrustRoots {
    pub fn from_pem(pem: &[u8]) -> anyhow::Result<TrustRoots> {
        let mut store = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem) {
            store.add(cert.context("parsing a CA certificate")?).context("adding a CA cert")?;
        }
        if store.is_empty() {
            bail!("no CA certificate found");
        }
        Ok(TrustRoots { store: Arc::new(store) })
    }

    /// Loads `ca.pem` from a CA directory.
    pub fn load(dir: &Path) -> anyhow::Result<TrustRoots> {
        let path = dir.join(CA_CERT_FILE);
        let pem = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        TrustRoots::from_pem(&pem)
    }
}

/// A node's certificate chain and private key. Owned by the node; handed to
/// the transport at start-up.
pub struct NodeIdentity {
    pub node: NodeId,
    pub cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for NodeIdentity {
    fn clone(&self) -> Self {
        NodeIdentity {
            node: self.node,
            cert_chain: self.cert_chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl NodeIdentity {
    /// Parses a certificate and key and checks the certificate names `node`.
    pub fn from_pem(node: NodeId, cert_pem: &[u8], key_pem: &[u8]) -> anyhow::Result<NodeIdentity> {
        let cert_chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .context("parsing a node certificate")?;
        let Some(leaf) = cert_chain.first() else { bail!("no node certificate found") };
        let named = peer_node_id(leaf)?;
        if named != node {
            bail!("certificate names node {named}, expected node {node}");
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem).context("parsing a node key")?;
        Ok(NodeIdentity { node, cert_chain, key })
    }

    /// Loads `node-<id>.pem` and `node-<id>.key.pem` from a CA directory.
    pub fn load(dir: &Path, node: NodeId) -> anyhow::Result<NodeIdentity> {
        let (cert_path, key_path) = node_files(dir, node);
        let cert = std::fs::read(&cert_path)
            .with_context(|| format!("reading {}", cert_path.display()))?;
        let key =
            std::fs::read(&key_path).with_context(|| format!("reading {}", key_path.display()))?;
        NodeIdentity::from_pem(node, &cert, &key)
    }

    fn key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }
}

/// The server side of mutual TLS: presents `identity`, requires a client
/// certificate chaining to `roots`. TLS 1.3 only (QUIC requires it).
pub fn server_config(
    roots: &TrustRoots,
    identity: &NodeIdentity,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots.store.clone(), ring())
            .build()
            .context("building the client certificate verifier")?;
    let mut config = rustls::ServerConfig::builder_with_provider(ring())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3 with ring")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.cert_chain.clone(), identity.key())
        .context("node certificate and key")?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// The client side of mutual TLS: presents `identity`, verifies the server
/// against `roots` and the server name it dials (`node_server_name`).
pub fn client_config(
    roots: &TrustRoots,
    identity: &NodeIdentity,
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut config = rustls::ClientConfig::builder_with_provider(ring())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3 with ring")?
        .with_root_certificates(roots.store.clone())
        .with_client_auth_cert(identity.cert_chain.clone(), identity.key())
        .context("node certificate and key")?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// The client side of mutual TLS towards "whichever controller member
/// answers at this address": a node knows its controllers' addresses, not
/// their member ids. Presents `identity` and accepts a server certificate
/// that chains to `roots` and names a controller node id (at least
/// `CONTROLLER_NODE_ID_MIN`), verified as if that name had been dialed. A
/// storage node's certificate, or one from another CA, is refused.
pub fn controller_client_config(
    roots: &TrustRoots,
    identity: &NodeIdentity,
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let inner =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots.store.clone(), ring())
            .build()
            .context("building the server certificate verifier")?;
    let mut config = rustls::ClientConfig::builder_with_provider(ring())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3 with ring")?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyControllerVerifier { inner }))
        .with_client_auth_cert(identity.cert_chain.clone(), identity.key())
        .context("node certificate and key")?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// WebPKI verification of a controller certificate against the name it
/// carries itself, once that name is known to be a controller's.
#[derive(Debug)]
struct AnyControllerVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
}

impl rustls::client::danger::ServerCertVerifier for AnyControllerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let node = peer_node_id(end_entity).map_err(|e| rustls::Error::General(e.to_string()))?;
        if node.0 < CONTROLLER_NODE_ID_MIN {
            return Err(rustls::Error::General(format!("node {node} is not a controller")));
        }
        let name = rustls::pki_types::ServerName::try_from(node_server_name(node))
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        self.inner.verify_server_cert(end_entity, intermediates, &name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The node id a (verified) node certificate names: its one `node-<id>.weir`
/// DNS subject alternative name.
pub fn peer_node_id(cert: &CertificateDer<'_>) -> anyhow::Result<NodeId> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, x509) = X509Certificate::from_der(cert.as_ref())
        .map_err(|e| anyhow::anyhow!("parsing a peer certificate: {e}"))?;
    let san = x509
        .subject_alternative_name()
        .map_err(|e| anyhow::anyhow!("peer certificate SAN: {e}"))?
        .ok_or_else(|| anyhow::anyhow!("peer certificate has no subject alternative name"))?;
    let mut ids = san.value.general_names.iter().filter_map(|name| match name {
        GeneralName::DNSName(dns) => {
            let id = dns.strip_prefix("node-")?.strip_suffix(".weir")?;
            // Digits only: "+7" or "007" would name the same node twice.
            if id.is_empty() || id.len() > 10 || !id.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            if id.len() > 1 && id.starts_with('0') {
                return None;
            }
            id.parse::<i32>().ok()
        }
        _ => None,
    });
    match (ids.next(), ids.next()) {
        (Some(id), None) => Ok(NodeId(id)),
        (None, _) => bail!("peer certificate names no node"),
        (Some(_), Some(_)) => bail!("peer certificate names more than one node"),
    }
}
