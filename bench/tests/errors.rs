//! Clear errors and non-zero exit codes for targets that cannot be reached
//! or do not speak their protocol, and for bad flags.

mod common;

use anyhow::Result;
use common::mock::{MockServer, Mode};
use common::{bench, describe, TempDir};

/// Runs one tiny benchmark against `target` and returns its exit code and
/// stderr.
async fn try_target(target: &str) -> Result<(Option<i32>, String)> {
    let dir = TempDir::new("errors")?;
    let output = bench(&[
        "run",
        "--target",
        target,
        "--requests",
        "1",
        "--out",
        &dir.file("r.json"),
    ])
    .await?;
    assert!(
        !dir.join("r.json").exists(),
        "a failed run wrote results: {}",
        describe(&output)
    );
    Ok((
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

#[tokio::test]
async fn unreachable_targets_say_so() -> Result<()> {
    for target in ["grpc://127.0.0.1:1", "http://127.0.0.1:1"] {
        let (code, stderr) = try_target(target).await?;
        assert_eq!(code, Some(1), "{stderr}");
        let expected = format!("cannot reach {target}: connection refused; is the server running?");
        assert!(stderr.contains(&expected), "{stderr}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_html_server_is_not_taken_for_either_protocol() -> Result<()> {
    let html = MockServer::start(Mode::Html).await?;

    let (code, stderr) = try_target(&html.url()).await?;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("does not answer as an OpenAI-compatible HTTP server"),
        "{stderr}"
    );
    assert!(stderr.contains("HTML"), "{stderr}");

    let grpc = format!("grpc://{}", html.addr);
    let (code, stderr) = try_target(&grpc).await?;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("does not answer as a Tessera gRPC server"),
        "{stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn bad_flags_are_refused() -> Result<()> {
    let cases: [&[&str]; 6] = [
        &["run", "--target", "ftp://127.0.0.1:1"],
        &["run", "--target", "https://127.0.0.1:1"],
        &[
            "run",
            "--target",
            "grpc://127.0.0.1:1",
            "--output-len",
            "fixed:0",
        ],
        &[
            "run",
            "--target",
            "grpc://127.0.0.1:1",
            "--prompt-len",
            "uniform:9-2",
        ],
        &[
            "run",
            "--target",
            "grpc://127.0.0.1:1",
            "--concurrency",
            "2",
            "--rate",
            "1",
        ],
        &["compare"],
    ];
    for args in cases {
        let output = bench(args).await?;
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            describe(&output)
        );
    }

    let output = bench(&[
        "run",
        "--target",
        "grpc://127.0.0.1:1",
        "--concurrency",
        "0",
    ])
    .await?;
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let output = bench(&[
        "run",
        "--target",
        "grpc://127.0.0.1:1",
        "--label",
        "a",
        "--label",
        "b",
    ])
    .await?;
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    Ok(())
}

#[tokio::test]
async fn plot_refuses_files_that_are_not_results() -> Result<()> {
    let dir = TempDir::new("plot-errors")?;
    std::fs::write(dir.join("x.json"), "{\"hello\": 1}")?;
    let output = bench(&["plot", &dir.file("x.json"), "--out", &dir.file("charts")]).await?;
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("is not a tessera-bench results file"),
        "{stderr}"
    );
    Ok(())
}
