//! A mock OpenAI-compatible server on 127.0.0.1, written by hand on tokio's
//! TCP listener: just enough HTTP/1.1 to serve `GET /v1/models` and a
//! streamed `POST /v1/completions`, one request per connection.
//!
//! Every text chunk of its streams stands for two tokens, and its usage
//! figures say so (`completion_tokens` is `max_tokens`, `prompt_tokens` is
//! twice the prompt's words), so a test can tell figures taken from usage
//! from figures counted in chunks.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The model the mock lists.
pub const MODEL: &str = "mock-model";

/// Tokens each text chunk stands for.
pub const TOKENS_PER_CHUNK: u64 = 2;

/// The pause between two chunks of a stream.
const CHUNK_GAP: Duration = Duration::from_millis(2);

/// How the mock behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A well-behaved server with usage on every stream.
    Usage,
    /// Usage is left out of the completion streams whose number (from 0,
    /// in order of arrival, the probe included) modulo `n` is `n - 1`.
    UsageMissingEvery(u64),
    /// An HTML web server: every answer is a 200 page.
    Html,
}

/// A running mock; stops when dropped.
pub struct MockServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The bodies of the completion requests it received, in order.
    pub completions: Arc<Mutex<Vec<Value>>>,
    task: JoinHandle<()>,
}

impl MockServer {
    /// Starts a mock in `mode` on a free port of 127.0.0.1.
    pub async fn start(mode: Mode) -> Result<MockServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let completions = Arc::new(Mutex::new(Vec::new()));
        let seen = completions.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let _ = serve(socket, mode, seen).await;
                });
            }
        });
        Ok(MockServer {
            addr,
            completions,
            task,
        })
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Completion requests received so far.
    pub fn completion_count(&self) -> usize {
        self.completions.lock().map(|c| c.len()).unwrap_or(0)
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A parsed request: method, path, body.
struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
}

/// Answers the one request of a connection.
async fn serve(socket: TcpStream, mode: Mode, seen: Arc<Mutex<Vec<Value>>>) -> Result<()> {
    let mut reader = BufReader::new(socket);
    let request = read_request(&mut reader).await?;
    let mut socket = reader.into_inner();

    if mode == Mode::Html {
        let page = "<!doctype html><html><body>Welcome</body></html>";
        return respond(&mut socket, "200 OK", "text/html; charset=utf-8", page).await;
    }
    match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/v1/models") => {
            let listing = json!({"object": "list", "data": [{"id": MODEL, "object": "model"}]});
            respond(
                &mut socket,
                "200 OK",
                "application/json",
                &listing.to_string(),
            )
            .await
        }
        ("POST", "/v1/completions") => {
            let body: Value = serde_json::from_slice(&request.body)?;
            let number = {
                let mut seen = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                seen.push(body.clone());
                seen.len() as u64 - 1
            };
            let with_usage = match mode {
                Mode::UsageMissingEvery(n) => number % n != n - 1,
                _ => true,
            };
            stream_completion(&mut socket, &body, with_usage).await
        }
        _ => {
            respond(
                &mut socket,
                "404 Not Found",
                "application/json",
                "{\"error\":\"not found\"}",
            )
            .await
        }
    }
}

/// Reads the request line, the headers and a `Content-Length` body.
async fn read_request(reader: &mut BufReader<TcpStream>) -> Result<Request> {
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        bail!("bad request line {line:?}");
    };
    let (method, path) = (method.to_owned(), path.to_owned());

    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).await? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().context("bad content-length")?;
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await?;
    Ok(Request { method, path, body })
}

/// A whole answer with a `Content-Length`.
async fn respond(
    socket: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
) -> Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await?;
    socket.write_all(body.as_bytes()).await?;
    Ok(socket.shutdown().await?)
}

/// A streamed completion: one chunk per two tokens, a finish chunk, the
/// usage chunk (unless left out) and `[DONE]`; the body ends when the
/// connection closes.
async fn stream_completion(socket: &mut TcpStream, body: &Value, with_usage: bool) -> Result<()> {
    let max_tokens = body["max_tokens"].as_u64().context("no max_tokens")?;
    let words = body["prompt"]
        .as_str()
        .context("no prompt")?
        .split_whitespace()
        .count() as u64;
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n";
    socket.write_all(head.as_bytes()).await?;

    let chunks = max_tokens.div_ceil(TOKENS_PER_CHUNK);
    for _ in 0..chunks {
        tokio::time::sleep(CHUNK_GAP).await;
        let chunk = json!({"object": "text_completion", "model": MODEL,
            "choices": [{"index": 0, "text": "ab ", "finish_reason": null}]});
        event(socket, &chunk.to_string()).await?;
    }
    let finish = json!({"choices": [{"index": 0, "text": "", "finish_reason": "length"}]});
    event(socket, &finish.to_string()).await?;
    if with_usage {
        let usage = json!({"choices": [], "usage": {"prompt_tokens": 2 * words,
            "completion_tokens": max_tokens, "total_tokens": 2 * words + max_tokens}});
        event(socket, &usage.to_string()).await?;
    }
    event(socket, "[DONE]").await?;
    Ok(socket.shutdown().await?)
}

async fn event(socket: &mut TcpStream, data: &str) -> Result<()> {
    socket
        .write_all(format!("data: {data}\n\n").as_bytes())
        .await?;
    Ok(socket.flush().await?)
}
