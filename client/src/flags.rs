//! The command-line flags of a [`Security`] (feature `clap`), so that
//! every tool of the workspace (the `vss` CLI, vss-bench) takes the same
//! ones, with the same environment variables.

use std::io;
use std::path::{Path, PathBuf};

use crate::Security;

/// TLS to the client port and a client token. Flatten it into a
/// `clap::Parser` with `#[command(flatten)]`; the flags are global.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SecurityArgs {
    /// TLS to the client port: the CA (PEM) the instances' certificates
    /// are signed by.
    #[arg(long, env = "VSS_TLS_CA", value_name = "FILE", global = true)]
    pub tls_ca: Option<PathBuf>,
    /// A client certificate (PEM), for instances that require one; with
    /// --tls-key and --tls-ca.
    #[arg(
        long,
        env = "VSS_TLS_CERT",
        value_name = "FILE",
        global = true,
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(
        long,
        env = "VSS_TLS_KEY",
        value_name = "FILE",
        global = true,
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// A client token, sent as `authorization: Bearer <token>`. Prefer the
    /// environment variable or --token-file: arguments show in `ps`.
    #[arg(long, env = "VSS_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// A file holding the client token (a mounted Secret).
    #[arg(
        long,
        env = "VSS_TOKEN_FILE",
        value_name = "FILE",
        global = true,
        conflicts_with = "token"
    )]
    pub token_file: Option<PathBuf>,
}

/// A file named by a flag that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecurityArgsError {
    #[error("{flag} {}: {error}", path.display())]
    Read {
        flag: &'static str,
        path: PathBuf,
        error: io::Error,
    },
    #[error("{flag} {}: not UTF-8", path.display())]
    NotUtf8 { flag: &'static str, path: PathBuf },
}

impl SecurityArgs {
    /// The settings, with the files read.
    pub fn load(&self) -> Result<Security, SecurityArgsError> {
        let token = match (&self.token, &self.token_file) {
            (Some(token), _) => Some(token.clone()),
            (None, Some(path)) => {
                let flag = "--token-file";
                let text = String::from_utf8(read(flag, path)?).map_err(|_| {
                    SecurityArgsError::NotUtf8 {
                        flag,
                        path: path.clone(),
                    }
                })?;
                Some(text.trim().to_string())
            }
            (None, None) => None,
        };
        Ok(Security {
            ca_pem: self
                .tls_ca
                .as_deref()
                .map(|p| read("--tls-ca", p))
                .transpose()?,
            identity_pem: match (&self.tls_cert, &self.tls_key) {
                (Some(cert), Some(key)) => {
                    Some((read("--tls-cert", cert)?, read("--tls-key", key)?))
                }
                _ => None,
            },
            token,
        })
    }
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, SecurityArgsError> {
    std::fs::read(path).map_err(|error| SecurityArgsError::Read {
        flag,
        path: path.to_path_buf(),
        error,
    })
}
