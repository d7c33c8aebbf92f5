//! The one error type of the SDK, and the conversion from `tonic::Status`.
//!
//! A server's answer keeps its gRPC code, so that callers can match on
//! `INVALID_ARGUMENT`, `RESOURCE_EXHAUSTED` and so on. A deadline that passes
//! is always reported as `DEADLINE_EXCEEDED`, whichever side noticed it first.

use std::error::Error as _;
use std::time::Duration;

use tonic::Code;

/// Everything a [`Client`](crate::Client) call or connection can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The address could not be used to reach a server.
    #[error("invalid address {addr:?}: {reason}")]
    InvalidAddress {
        /// The address as given.
        addr: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The API key cannot be sent as gRPC metadata (it must be visible ASCII).
    #[error("the API key holds characters that cannot be sent as gRPC metadata")]
    InvalidApiKey,

    /// No connection to the server could be made.
    #[error("cannot connect to {addr}")]
    Connect {
        /// The address that was dialled.
        addr: String,
        /// The transport's reason; its own sources say more.
        #[source]
        source: tonic::transport::Error,
    },

    /// The call ended with a gRPC status other than OK: the server's answer,
    /// a transport failure mapped to a status, or a passed deadline.
    #[error("{code:?}: {message}")]
    Status {
        /// The gRPC status code, e.g. [`Code::InvalidArgument`].
        code: Code,
        /// The sentence the server (or the transport) gave.
        message: String,
    },
}

impl ClientError {
    /// A short, stable name of the error kind, for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            ClientError::InvalidAddress { .. } => "invalid_address",
            ClientError::InvalidApiKey => "invalid_api_key",
            ClientError::Connect { .. } => "connect",
            ClientError::Status { .. } => "status",
        }
    }

    /// The gRPC status code, for [`ClientError::Status`] only.
    pub fn code(&self) -> Option<Code> {
        match self {
            ClientError::Status { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The error for a call whose deadline of `timeout` passed.
    pub(crate) fn deadline_exceeded(timeout: Duration) -> Self {
        ClientError::Status {
            code: Code::DeadlineExceeded,
            message: format!("the call's deadline of {} ms passed", timeout.as_millis()),
        }
    }

    /// Converts a status, naming a passed deadline as `DEADLINE_EXCEEDED`.
    ///
    /// tonic's channel reports its own expired `grpc-timeout` as `CANCELLED`
    /// with a [`tonic::TimeoutExpired`] source; the caller asked for a
    /// deadline, so it gets the code gRPC defines for one.
    pub(crate) fn from_status(status: tonic::Status, timeout: Option<Duration>) -> Self {
        if let Some(timeout) = timeout {
            if status.code() == Code::Cancelled && caused_by_timeout(&status) {
                return ClientError::deadline_exceeded(timeout);
            }
        }
        ClientError::Status {
            code: status.code(),
            message: status.message().to_owned(),
        }
    }
}

/// Whether a [`tonic::TimeoutExpired`] is in the status's source chain.
fn caused_by_timeout(status: &tonic::Status) -> bool {
    let mut source = status.source();
    while let Some(err) = source {
        if err.is::<tonic::TimeoutExpired>() {
            return true;
        }
        source = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_stable() {
        let invalid = ClientError::InvalidAddress {
            addr: "x".into(),
            reason: "y".into(),
        };
        assert_eq!(invalid.label(), "invalid_address");
        assert_eq!(ClientError::InvalidApiKey.label(), "invalid_api_key");
        let status = ClientError::from_status(tonic::Status::not_found("gone"), None);
        assert_eq!(status.label(), "status");
        assert_eq!(status.code(), Some(Code::NotFound));
    }

    #[test]
    fn status_keeps_code_and_message() {
        let status = tonic::Status::invalid_argument("top_p must be in (0, 1]");
        let err = ClientError::from_status(status, Some(Duration::from_secs(1)));
        assert_eq!(err.code(), Some(Code::InvalidArgument));
        assert_eq!(err.to_string(), "InvalidArgument: top_p must be in (0, 1]");
    }

    #[test]
    fn plain_cancel_stays_cancelled() {
        let err = ClientError::from_status(
            tonic::Status::cancelled("client went away"),
            Some(Duration::from_secs(1)),
        );
        assert_eq!(err.code(), Some(Code::Cancelled));
    }

    #[test]
    fn channel_timeout_becomes_deadline_exceeded() {
        let status = tonic::Status::from_error(Box::new(tonic::TimeoutExpired(())));
        assert_eq!(status.code(), Code::Cancelled);
        let err = ClientError::from_status(status, Some(Duration::from_millis(250)));
        assert_eq!(err.code(), Some(Code::DeadlineExceeded));
        assert!(err.to_string().contains("250 ms"), "{err}");
    }
}
