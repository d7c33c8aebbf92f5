//! The SDK against an in-process mock server: request and response plumbing,
//! status codes, deadlines, streams, cancellation and credentials.

mod mock;

use std::time::Duration;

use mock::Event;
use tessera_client::{request, Client, ClientError, Code, FinishReason};
use tokio::net::TcpListener;
use tokio_stream::StreamExt;

/// Upper bound on anything a test waits for, so that none can hang.
const PATIENCE: Duration = Duration::from_secs(10);

#[tokio::test]
async fn generate_returns_the_servers_response() -> anyhow::Result<()> {
    let mock = mock::start().await?;
    let client = Client::connect(&mock.url()).await?;

    let response = client
        .generate(request::text("hello").max_new_tokens(3))
        .await?;
    assert_eq!(response.text, "echo: hello");
    assert_eq!(response.token_ids, [1, 2, 3]);
    assert_eq!(response.finish_reason(), FinishReason::Eos);
    assert_eq!(response.usage.map(|u| u.completion_tokens), Some(3));
    Ok(())
}

#[tokio::test]
async fn address_without_scheme_connects() -> anyhow::Result<()> {
    let mock = mock::start().await?;
    let client = Client::connect(&mock.addr.to_string()).await?;
    assert_eq!(client.model_info().await?.model, "mock-model");
    Ok(())
}

#[tokio::test]
async fn invalid_address_is_reported_before_dialling() -> anyhow::Result<()> {
    let err = Client::connect("ftp://127.0.0.1:1").await.err();
    let err = err.ok_or_else(|| anyhow::anyhow!("ftp:// was accepted"))?;
    assert_eq!(err.label(), "invalid_address");
    assert!(matches!(err, ClientError::InvalidAddress { .. }));
    Ok(())
}

#[tokio::test]
async fn refused_connection_is_a_connect_error() -> anyhow::Result<()> {
    // Bind then release a port so that nothing listens on it.
    let port = TcpListener::bind("127.0.0.1:0").await?.local_addr()?.port();
    let addr = format!("127.0.0.1:{port}");

    let result = Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .connect(&addr)
        .await;
    match result {
        Err(ClientError::Connect { addr: dialled, .. }) => assert_eq!(dialled, addr),
        other => anyhow::bail!("expected a connect error, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn statuses_keep_their_code_and_message() -> anyhow::Result<()> {
    let mock = mock::start().await?;
    let client = Client::connect(&mock.url()).await?;

    let err = client.generate(request::text("invalid")).await.err();
    let err = err.ok_or_else(|| anyhow::anyhow!("the call succeeded"))?;
    assert_eq!(err.code(), Some(Code::InvalidArgument));
    assert_eq!(err.label(), "status");
    assert!(
        err.to_string().contains("temperature must be in [0, 100]"),
        "{err}"
    );

    let err = client
        .chat(request::chat([request::user("exhausted")]))
        .await
        .err();
    assert_eq!(err.and_then(|e| e.code()), Some(Code::ResourceExhausted));
    Ok(())
}

#[tokio::test]
async fn unary_deadline_is_deadline_exceeded() -> anyhow::Result<()> {
    let mock = mock::start().await?;
    let client = Client::builder()
        .timeout(Duration::from_millis(200))
        .connect(&mock.url())
        .await?;

    let started = tokio::time::Instant::now();
    let err = client.generate(request::text("slow")).await.err();
    assert_eq!(err.and_then(|e| e.code()), Some(Code::DeadlineExceeded));
    assert!(
        started.elapsed() < mock::SLOW,
        "the call waited for the server"
    );

    // The server was told the deadline.
    let seen = mock.seen();
    assert!(seen.iter().all(|s| s.grpc_timeout.is_some()), "{seen:?}");
    Ok(())
}

#[tokio::test]
async fn stream_deadline_covers_the_whole_stream() -> anyhow::Result<()> {
    let mock = mock::start().await?;
    let client = Client::connect(&mock.url())
        .await?
        .with_timeout(Some(Duration::from_millis(300)));

    let mut stream = client.generate_stream(request::text("stall")).await?;
    let first = tokio::time::timeout(PATIENCE, stream.next_chunk()).await??;
    assert_eq!(first.map(|c| c.text).as_deref(), Some("first"));

    let second = tokio::time::timeout(PATIENCE, stream.next_chunk()).await?;
    assert_eq!(
        second.err().and_then(|e| e.code()),
        Some(Code::DeadlineExceeded)
    );
    assert!(
        stream.next().await.is_none(),
        "the stream went on after its deadline"
    );
    Ok(())
}

#[tokio::test]
async fn stream_delivers_chunks_in_order() -> anyhow::Result<()> {
    let mock = mock::start().await?;
    let client = Client::connect(&mock.url()).await?;

    let stream = client.generate_stream(request::text("count:5")).await?;
    let chunks: Vec<_> = tokio::time::timeout(PATIENCE, stream.collect::<Vec<_>>()).await?;
    let chunks = chunks.into_iter().collect::<Result<Vec<_>, _>>()?;
    let texts: Vec<_> = chunks.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(texts, ["0", "1", "2", "3", "4"]);
    assert!(chunks[..4]
        .iter()
        .all(|c| c.finish_reason() == FinishReason::Unspecified));
    assert_eq!(chunks[4].finish_reason(), FinishReason::Length);
    Ok(())
}

#[tokio::test]
async fn collected_stream_matches_a_response() -> anyhow::Result<()> {
    let mock = mock::start().await?;
    let client = Client::connect(&mock.url()).await?;

    let stream = client
        .chat_stream(request::chat([request::user("count:3")]))
        .await?;
    let response = tokio::time::timeout(PATIENCE, stream.collect_response()).await??;
    assert_eq!(response.text, "012");
    assert_eq!(response.token_ids, [0, 1, 2]);
    assert_eq!(response.finish_reason(), FinishReason::Length);
    assert_eq!(response.usage.map(|u| u.completion_tokens), Some(3));
    Ok(())
}

#[tokio::test]
async fn dropping_a_stream_cancels_it_on_the_server() -> anyhow::Result<()> {
    let mut mock = mock::start().await?;
    let client = Client::connect(&mock.url()).await?;

    let mut stream = client.generate_stream(request::text("forever")).await?;
    for _ in 0..3 {
        let chunk = tokio::time::timeout(PATIENCE, stream.next_chunk()).await??;
        assert!(chunk.is_some(), "the stream ended early");
    }
    drop(stream);

    let event = tokio::time::timeout(PATIENCE, mock.events.recv()).await?;
    assert_eq!(event, Some(Event::StreamClosed));
    Ok(())
}

#[tokio::test]
async fn api_key_is_sent_as_bearer_metadata() -> anyhow::Result<()> {
    let mock = mock::start().await?;
    let with_key = Client::builder()
        .api_key("t0ken")
        .connect(&mock.url())
        .await?;
    let without_key = Client::connect(&mock.url()).await?;

    with_key.model_info().await?;
    with_key
        .generate_stream(request::text("count:1"))
        .await?
        .collect_response()
        .await?;
    without_key.model_info().await?;

    let auth: Vec<_> = mock.seen().into_iter().map(|s| s.authorization).collect();
    let bearer = Some("Bearer t0ken".to_owned());
    assert_eq!(auth, [bearer.clone(), bearer, None]);
    Ok(())
}

#[tokio::test]
async fn tokenize_and_model_info_round_trip() -> anyhow::Result<()> {
    let mock = mock::start().await?;
    let client = Client::connect(&mock.url()).await?;

    let ids = client
        .tokenize(request::tokenize_text("AB"))
        .await?
        .token_ids;
    assert_eq!(ids, [65, 66]);
    let chat = request::tokenize_chat([request::system("A"), request::user("C")]);
    assert_eq!(client.tokenize(chat).await?.token_ids, [65, 67]);

    let info = client.model_info().await?;
    assert_eq!((info.world_size, info.eos_token_ids), (2, vec![2]));
    Ok(())
}

#[tokio::test]
async fn clients_share_a_connection_concurrently() -> anyhow::Result<()> {
    let mock = mock::start().await?;
    let client = Client::connect(&mock.url()).await?;

    let calls = (0..8).map(|i| {
        let client = client.clone();
        tokio::spawn(async move { client.generate(request::text(format!("n{i}"))).await })
    });
    for (i, call) in calls.collect::<Vec<_>>().into_iter().enumerate() {
        let response = tokio::time::timeout(PATIENCE, call).await???;
        assert_eq!(response.text, format!("echo: n{i}"));
    }
    Ok(())
}
