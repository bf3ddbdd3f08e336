//! A device opening a QUIC connection (quinn, a QUIC library from crates.io):
//! `iot-lab-quic ADDRESS:PORT SERVER-NAME [SECONDS]`. It sends real client
//! Initial packets carrying the name in their TLS ClientHello (SNI) and
//! gives up after SECONDS (default 3) if no server answers — the router
//! only needs to see the Initials.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// The lab has no PKI: accept any certificate (never used outside tests).
#[derive(Debug)]
struct AnyCert;

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        anyhow::bail!("usage: iot-lab-quic ADDRESS:PORT SERVER-NAME [SECONDS]");
    }
    let server: SocketAddr = args[1].parse()?;
    let name = args[2].clone();
    let secs: u64 = args
        .get(3)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .min(30);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let crypto = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert))
        .with_no_client_auth();
        let mut crypto = crypto;
        crypto.alpn_protocols = vec![b"h3".to_vec()];
        let qcrypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto)?;
        let config = quinn::ClientConfig::new(Arc::new(qcrypto));
        let bind: SocketAddr = if server.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        }
        .parse()?;
        let mut endpoint = quinn::Endpoint::client(bind)?;
        endpoint.set_default_client_config(config);
        let connecting = endpoint.connect(server, &name)?;
        match tokio::time::timeout(Duration::from_secs(secs), connecting).await {
            Ok(Ok(_)) => println!("connected"),
            Ok(Err(e)) => println!("no connection: {e}"),
            Err(_) => println!("no answer in {secs} s"),
        }
        endpoint.close(0u32.into(), b"");
        anyhow::Ok(())
    })
}
