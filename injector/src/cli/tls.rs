//! The CLI's side of TLS: which certificates it trusts. A chaos daemon
//! usually has a self-signed certificate, so `INJECTOR_CA_CERT` (a PEM file)
//! comes first; without it, the system's bundle.

use std::{path::PathBuf, sync::Arc};

use anyhow::{Context, bail};
use tokio_rustls::{
    TlsConnector,
    rustls::{
        ClientConfig, RootCertStore,
        pki_types::{CertificateDer, ServerName, pem::PemObject},
    },
};

/// Where Debian, Ubuntu and Fedora keep the system's trusted CAs.
const SYSTEM_BUNDLES: [&str; 2] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
];

pub fn connector() -> anyhow::Result<TlsConnector> {
    let file = match std::env::var_os("INJECTOR_CA_CERT") {
        Some(f) => PathBuf::from(f),
        None => match SYSTEM_BUNDLES
            .iter()
            .find(|p| std::path::Path::new(p).exists())
        {
            Some(p) => PathBuf::from(p),
            None => bail!("no CA bundle found: set INJECTOR_CA_CERT to the daemon's certificate"),
        },
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&file)
        .with_context(|| format!("cannot read CA certificates from {}", file.display()))?
    {
        let cert = cert.with_context(|| format!("bad PEM in {}", file.display()))?;
        roots
            .add(cert)
            .with_context(|| format!("unusable CA certificate in {}", file.display()))?;
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

pub fn server_name(host: &str) -> anyhow::Result<ServerName<'static>> {
    ServerName::try_from(host.to_string())
        .with_context(|| format!("{host:?} is not a TLS server name"))
}
