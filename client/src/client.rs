//! [`Client`] and [`ClientBuilder`]: a connection to a coordinator's public
//! `tessera.v1.Generation` service.
//!
//! A `Client` is a handle on one HTTP/2 channel; cloning it is cheap and
//! clones share the channel, so calls may run concurrently from many tasks.
//! Each call carries the client's deadline (as `grpc-timeout`, which the
//! server sees, and enforced here too) and its API key (as
//! `authorization: Bearer <key>` metadata).

use std::fmt;
use std::future::Future;
use std::time::Duration;

use tessera_proto::v1::generation_client::GenerationClient;
use tessera_proto::v1::{
    ChatRequest, GenerateChunk, GenerateRequest, GenerateResponse, ModelInfoRequest,
    ModelInfoResponse, TokenizeRequest, TokenizeResponse,
};
use tokio::time::Instant;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};

use crate::stream::{Deadline, GenerationStream};
use crate::ClientError;

/// How long [`Client::connect`] waits for a connection unless the builder
/// says otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Options for a [`Client`]; finish with [`connect`](Self::connect).
#[derive(Clone)]
#[must_use]
pub struct ClientBuilder {
    connect_timeout: Duration,
    timeout: Option<Duration>,
    api_key: Option<String>,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            timeout: None,
            api_key: None,
        }
    }
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl ClientBuilder {
    /// A builder with the defaults: [`DEFAULT_CONNECT_TIMEOUT`], no call
    /// deadline, no API key.
    pub fn new() -> Self {
        ClientBuilder::default()
    }

    /// How long to wait for the TCP and HTTP/2 connection. Default 5 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The deadline of every call, from its start to its last message
    /// (streams included). Default: none.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// An API key, sent with every call as `authorization: Bearer <key>`.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// Connects to `addr`: `http://host:port` or `host:port`.
    pub async fn connect(self, addr: &str) -> Result<Client, ClientError> {
        let endpoint = endpoint(addr)?.connect_timeout(self.connect_timeout);
        let authorization = self.api_key.as_deref().map(bearer).transpose()?;

        let channel = endpoint
            .connect()
            .await
            .map_err(|source| ClientError::Connect {
                addr: addr.to_owned(),
                source,
            })?;
        Ok(Client {
            inner: GenerationClient::new(channel),
            timeout: self.timeout,
            authorization,
        })
    }
}

/// Parses `addr`, adding `http://` when it has no scheme.
fn endpoint(addr: &str) -> Result<Endpoint, ClientError> {
    let invalid = |reason: String| ClientError::InvalidAddress {
        addr: addr.to_owned(),
        reason,
    };
    // Checked on the text: tonic reads `unix:` addresses as socket paths.
    let uri = match addr.split_once("://") {
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("http") => addr.to_owned(),
        Some(_) => return Err(invalid("only http:// addresses are supported".to_owned())),
        None if addr.starts_with("unix:") => {
            return Err(invalid("only http:// addresses are supported".to_owned()))
        }
        None => format!("http://{addr}"),
    };

    let endpoint = Endpoint::from_shared(uri).map_err(|err| {
        let detail = std::error::Error::source(&err).map(ToString::to_string);
        invalid(detail.unwrap_or_else(|| "not a valid URI".to_owned()))
    })?;
    let uri = endpoint.uri();
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("no host".to_owned()));
    }
    if has_bad_port(&endpoint) {
        return Err(invalid(
            "the port is not a number from 0 to 65535".to_owned(),
        ));
    }
    Ok(endpoint)
}

/// Whether the address names a port that is not a `u16` (the URI parser
/// accepts any text there and then reports no port at all).
fn has_bad_port(endpoint: &Endpoint) -> bool {
    let uri = endpoint.uri();
    let Some(authority) = uri.authority() else {
        return false;
    };
    let host_port = authority.as_str().rsplit('@').next().unwrap_or_default();
    let after_ipv6 = host_port.rsplit(']').next().unwrap_or_default();
    after_ipv6.contains(':') && uri.port_u16().is_none()
}

/// The `authorization` metadata value for `key`, marked sensitive so that
/// the transport never logs it.
fn bearer(key: &str) -> Result<MetadataValue<Ascii>, ClientError> {
    let mut value: MetadataValue<Ascii> = format!("Bearer {key}")
        .parse()
        .map_err(|_| ClientError::InvalidApiKey)?;
    value.set_sensitive(true);
    Ok(value)
}

/// A connection to the `tessera.v1.Generation` service.
#[derive(Clone)]
pub struct Client {
    inner: GenerationClient<Channel>,
    timeout: Option<Duration>,
    authorization: Option<MetadataValue<Ascii>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("timeout", &self.timeout)
            .field(
                "api_key",
                &self.authorization.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl Client {
    /// Connects to `addr` (`http://host:port` or `host:port`) with the
    /// defaults of [`ClientBuilder::new`].
    pub async fn connect(addr: &str) -> Result<Client, ClientError> {
        ClientBuilder::new().connect(addr).await
    }

    /// A builder for a client with a deadline, an API key or another
    /// connect timeout.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::new()
    }

    /// The deadline each call gets, if any.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// A client on the same connection whose calls get `timeout` as their
    /// deadline (`None`: no deadline).
    #[must_use]
    pub fn with_timeout(&self, timeout: Option<Duration>) -> Client {
        Client {
            timeout,
            ..self.clone()
        }
    }

    /// Generates a completion and returns it whole.
    pub async fn generate(
        &self,
        request: impl Into<GenerateRequest>,
    ) -> Result<GenerateResponse, ClientError> {
        let request = self.request(request.into());
        self.unary(|mut c| async move { c.generate(request).await })
            .await
    }

    /// Generates a completion, streaming it as it is produced.
    pub async fn generate_stream(
        &self,
        request: impl Into<GenerateRequest>,
    ) -> Result<GenerationStream, ClientError> {
        let request = self.request(request.into());
        self.streaming(|mut c| async move { c.generate_stream(request).await })
            .await
    }

    /// Answers a conversation rendered with the model's chat template.
    pub async fn chat(
        &self,
        request: impl Into<ChatRequest>,
    ) -> Result<GenerateResponse, ClientError> {
        let request = self.request(request.into());
        self.unary(|mut c| async move { c.chat(request).await })
            .await
    }

    /// Answers a conversation, streaming the answer.
    pub async fn chat_stream(
        &self,
        request: impl Into<ChatRequest>,
    ) -> Result<GenerationStream, ClientError> {
        let request = self.request(request.into());
        self.streaming(|mut c| async move { c.chat_stream(request).await })
            .await
    }

    /// The token ids of a text or conversation, as the model sees them.
    pub async fn tokenize(
        &self,
        request: TokenizeRequest,
    ) -> Result<TokenizeResponse, ClientError> {
        let request = self.request(request);
        self.unary(|mut c| async move { c.tokenize(request).await })
            .await
    }

    /// The model the cluster serves and how it is split.
    pub async fn model_info(&self) -> Result<ModelInfoResponse, ClientError> {
        let request = self.request(ModelInfoRequest {});
        self.unary(|mut c| async move { c.model_info(request).await })
            .await
    }

    /// Wraps a message with the client's deadline and credentials.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(timeout) = self.timeout {
            request.set_timeout(timeout);
        }
        if let Some(value) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        request
    }

    /// The deadline of a call starting now.
    fn deadline(&self) -> Option<Deadline> {
        self.timeout.map(|timeout| Deadline {
            sleep: Box::pin(tokio::time::sleep_until(Instant::now() + timeout)),
            timeout,
        })
    }

    /// Runs a unary call within the deadline.
    async fn unary<R, F, Fut>(&self, call: F) -> Result<R, ClientError>
    where
        F: FnOnce(GenerationClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        let call = call(self.inner.clone());
        let result = match self.deadline() {
            Some(deadline) => tokio::select! {
                result = call => result,
                () = deadline.sleep => {
                    return Err(ClientError::deadline_exceeded(deadline.timeout));
                }
            },
            None => call.await,
        };
        result
            .map(tonic::Response::into_inner)
            .map_err(|status| ClientError::from_status(status, self.timeout))
    }

    /// Starts a streaming call within the deadline; the stream keeps it.
    async fn streaming<F, Fut>(&self, call: F) -> Result<GenerationStream, ClientError>
    where
        F: FnOnce(GenerationClient<Channel>) -> Fut,
        Fut: Future<
            Output = Result<tonic::Response<tonic::Streaming<GenerateChunk>>, tonic::Status>,
        >,
    {
        let call = call(self.inner.clone());
        let mut deadline = self.deadline();
        let result = match deadline.as_mut() {
            Some(deadline) => tokio::select! {
                result = call => result,
                () = deadline.sleep.as_mut() => {
                    return Err(ClientError::deadline_exceeded(deadline.timeout));
                }
            },
            None => call.await,
        };
        let inner = result.map_err(|status| ClientError::from_status(status, self.timeout))?;
        Ok(GenerationStream::new(inner.into_inner(), deadline))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(addr: &str) -> Option<String> {
        match endpoint(addr) {
            Err(ClientError::InvalidAddress { reason, .. }) => Some(reason),
            _ => None,
        }
    }

    #[test]
    fn addresses_with_and_without_scheme_are_accepted() -> Result<(), ClientError> {
        let with = endpoint("http://127.0.0.1:50051")?;
        let without = endpoint("127.0.0.1:50051")?;
        assert_eq!(with.uri(), without.uri());
        assert_eq!(endpoint("localhost:7000")?.uri().port_u16(), Some(7000));
        assert_eq!(endpoint("[::1]:7000")?.uri().port_u16(), Some(7000));
        Ok(())
    }

    #[test]
    fn bad_addresses_are_rejected() {
        assert!(reason("https://127.0.0.1:1").is_some_and(|r| r.contains("http://")));
        assert!(reason("unix:///tmp/socket").is_some());
        assert!(reason("unix:/tmp/socket").is_some());
        assert!(endpoint("HTTP://127.0.0.1:1").is_ok());
        assert!(reason("127.0.0.1:port").is_some());
        assert!(reason("127.0.0.1:70000").is_some());
        assert!(reason("").is_some());
        assert!(reason("bad host:1").is_some());
    }

    #[test]
    fn api_key_becomes_a_sensitive_bearer_value() -> Result<(), ClientError> {
        let value = bearer("k3y")?;
        assert_eq!(value.to_str().ok(), Some("Bearer k3y"));
        assert!(value.is_sensitive());
        assert!(matches!(
            bearer("line\nbreak"),
            Err(ClientError::InvalidApiKey)
        ));
        Ok(())
    }

    #[test]
    fn debug_output_hides_the_api_key() {
        let builder = ClientBuilder::new().api_key("secret-key");
        assert!(!format!("{builder:?}").contains("secret-key"));
    }
}
