//! What a client presents to a cluster that asks for it: TLS to the
//! client port (checking the server's certificate, optionally presenting
//! one) and a token on every call.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};
use tonic::Status;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::ClientError;
use vss_wire::MeshConnector;

/// The channel to one instance, carrying the client's credentials on every
/// call.
pub type Conn = InterceptedService<Channel, Credentials>;

/// TLS and token settings of a [`crate::Client`]; the default is neither.
#[derive(Debug, Clone, Default)]
pub struct Security {
    /// CA certificates (PEM) the instances' certificates must be signed
    /// by. Setting it turns TLS on.
    pub ca_pem: Option<Vec<u8>>,
    /// This client's certificate chain and private key (PEM), for client
    /// ports that require client certificates. Needs `ca_pem`.
    pub identity_pem: Option<(Vec<u8>, Vec<u8>)>,
    /// Sent as `authorization: Bearer <token>` on every call.
    pub token: Option<String>,
}

impl Security {
    pub(crate) fn credentials(&self) -> Result<Credentials, ClientError> {
        let authorization = match &self.token {
            Some(token) => Some(format!("Bearer {}", token.trim()).parse().map_err(|_| {
                ClientError::InvalidSecurity {
                    what: "token".into(),
                    reason: "not printable ASCII".into(),
                }
            })?),
            None => None,
        };
        Ok(Credentials { authorization })
    }

    /// One connection to `endpoint`, made now, over TLS if it is on and
    /// carrying the token: for tools that hold their own channels rather
    /// than a [`crate::Client`] (vss-bench).
    pub async fn connect(&self, endpoint: Endpoint) -> Result<Conn, ClientError> {
        let credentials = self.credentials()?;
        let channel = match self.tls()? {
            Some(config) => {
                endpoint
                    .connect_with_connector(MeshConnector::fixed(config))
                    .await
            }
            None => endpoint.connect().await,
        };
        let channel = channel.map_err(|e| {
            // tonic's error says "transport error"; what failed is below.
            let mut reason = format!("{}: {e}", endpoint.uri());
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                reason.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            ClientError::Unreachable(vec![reason])
        })?;
        Ok(InterceptedService::new(channel, credentials))
    }

    /// The TLS config for the client port, if TLS is on.
    pub(crate) fn tls(&self) -> Result<Option<Arc<ClientConfig>>, ClientError> {
        let bad = |what: &str, reason: String| ClientError::InvalidSecurity {
            what: what.into(),
            reason,
        };
        let Some(ca) = &self.ca_pem else {
            if self.identity_pem.is_some() {
                return Err(bad(
                    "client certificate",
                    "needs the CA of the instances' certificates too (TLS)".into(),
                ));
            }
            return Ok(None);
        };
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca) {
            let cert = cert.map_err(|e| bad("CA", e.to_string()))?;
            roots.add(cert).map_err(|e| bad("CA", e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(bad("CA", "no PEM certificate".into()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad("TLS", e.to_string()))?
            .with_root_certificates(roots);
        let mut config = match &self.identity_pem {
            Some((chain, key)) => {
                let chain = CertificateDer::pem_slice_iter(chain)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| bad("client certificate", e.to_string()))?;
                if chain.is_empty() {
                    return Err(bad("client certificate", "no PEM certificate".into()));
                }
                let key = PrivateKeyDer::from_pem_slice(key)
                    .map_err(|e| bad("client key", e.to_string()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| bad("client certificate and key", e.to_string()))?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Some(Arc::new(config)))
    }
}

/// Adds the client's token to every call.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    authorization: Option<MetadataValue<Ascii>>,
}

impl Interceptor for Credentials {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(value) = &self.authorization {
            req.metadata_mut().insert("authorization", value.clone());
        }
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_goes_on_every_call_as_a_bearer() {
        let mut credentials = Security {
            token: Some("s3cret-0123456789".into()),
            ..Security::default()
        }
        .credentials()
        .expect("ascii");
        let req = credentials.call(tonic::Request::new(())).expect("passes");
        assert_eq!(
            req.metadata().get("authorization").map(|v| v.to_str().ok()),
            Some(Some("Bearer s3cret-0123456789"))
        );
    }

    #[test]
    fn bad_settings_name_what_is_wrong() {
        let e = Security {
            ca_pem: Some(b"not pem".to_vec()),
            ..Security::default()
        }
        .tls()
        .expect_err("no CA in it");
        assert_eq!(e.to_string(), "CA: no PEM certificate");
        let e = Security {
            identity_pem: Some((Vec::new(), Vec::new())),
            ..Security::default()
        }
        .tls()
        .expect_err("no CA");
        assert!(
            e.to_string()
                .starts_with("client certificate: needs the CA"),
            "{e}"
        );
    }
}
