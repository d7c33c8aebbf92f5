//! Helpers of the integration tests: running the `tessera-bench` binary,
//! temporary folders, and a mock OpenAI-compatible server.

#![allow(dead_code)]

pub mod mock;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;

/// Longest one `tessera-bench` command may take in a test.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// The binary under test.
pub fn bench_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tessera-bench"))
}

/// Runs `tessera-bench` with `args`, bounded by [`COMMAND_TIMEOUT`].
pub async fn bench(args: &[&str]) -> Result<Output> {
    let mut command = tokio::process::Command::new(bench_binary());
    command.args(args).kill_on_drop(true);
    let output = tokio::time::timeout(COMMAND_TIMEOUT, command.output())
        .await
        .with_context(|| format!("tessera-bench {args:?} took longer than {COMMAND_TIMEOUT:?}"))?
        .context("cannot start tessera-bench")?;
    Ok(output)
}

/// Both output streams of a command, for assertion messages.
pub fn describe(output: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Reads a JSON file.
pub fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

/// A folder under the system's temporary folder, removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// A new, empty folder.
    pub fn new(name: &str) -> Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("tessera-bench-{name}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(TempDir { path })
    }

    /// `name` inside the folder.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The folder, as a string for command lines.
    pub fn file(&self, name: &str) -> String {
        self.join(name).display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
