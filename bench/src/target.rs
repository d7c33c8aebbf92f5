//! Targets: where the load goes and which protocol it speaks.
//!
//! `grpc://HOST:PORT` is a Tessera coordinator, driven through its
//! `tessera.v1.Generation` API; `http://HOST:PORT` is any server with an
//! OpenAI-compatible `/v1/completions` endpoint (a trailing `/v1` is
//! accepted and dropped). TLS is not supported yet, so `https://` and
//! `grpcs://` are refused with a sentence saying so.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::BenchError;

/// The protocol a target speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// Tessera's gRPC API, `tessera.v1.Generation/GenerateStream`.
    Grpc,
    /// OpenAI-compatible HTTP, `POST /v1/completions` with `stream: true`.
    Openai,
}

/// A parsed target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The target as the user wrote it, used in messages and results.
    pub url: String,
    /// The protocol its scheme names.
    pub protocol: Protocol,
    /// Where to connect: `http://HOST:PORT` for gRPC (as the SDK takes it),
    /// `http://HOST:PORT[/PREFIX]` without a trailing `/` or `/v1` for HTTP.
    pub base: String,
}

impl FromStr for Target {
    type Err = BenchError;

    fn from_str(url: &str) -> Result<Self, BenchError> {
        let invalid = |reason: &str| BenchError::InvalidSpec {
            what: "target",
            value: url.to_owned(),
            reason: reason.to_owned(),
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid("expected grpc://HOST:PORT or http://HOST:PORT"))?;
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() {
            return Err(invalid("no host"));
        }

        let (protocol, base) = match scheme.to_ascii_lowercase().as_str() {
            "grpc" if rest.contains('/') => {
                return Err(invalid("a grpc:// target is HOST:PORT, without a path"))
            }
            "grpc" => (Protocol::Grpc, format!("http://{rest}")),
            "http" => {
                let rest = rest.strip_suffix("/v1").unwrap_or(rest);
                (Protocol::Openai, format!("http://{rest}"))
            }
            "https" | "grpcs" => {
                return Err(invalid(
                    "TLS targets are not supported yet; use http:// or grpc://",
                ))
            }
            _ => return Err(invalid("expected grpc://HOST:PORT or http://HOST:PORT")),
        };
        Ok(Target {
            url: url.to_owned(),
            protocol,
            base,
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}
