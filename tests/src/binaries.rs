//! Where the `tessera` and `tessera-shard` executables under test are, built
//! on first use.
//!
//! `cargo test -p tessera-e2e` builds only this package, and cargo offers
//! `CARGO_BIN_EXE_*` only for a package's own binaries, so the first test
//! that needs them runs `cargo build --bin tessera --bin tessera-shard` once
//! per test process. The build always runs (it is a no-op when nothing
//! changed): an executable left from an older build would test old code.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};

use crate::process::Process;

/// Longest the build of both executables may take (a cold build on two
/// cores takes a few minutes).
const BUILD_TIMEOUT: Duration = Duration::from_secs(20 * 60);

/// The executables under test.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// The coordinator, `tessera`.
    pub coordinator: PathBuf,
    /// The shard, `tessera-shard`.
    pub shard: PathBuf,
}

/// The workspace root (the folder above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The debug executables, built once per test process.
pub fn binaries() -> Result<&'static Binaries> {
    static BUILT: OnceLock<Result<Binaries, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow!("{e}"))
}

/// `$CARGO_TARGET_DIR/debug`, or `target/debug` in the workspace.
fn profile_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from);
    target.join("debug")
}

fn build() -> Result<Binaries> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args([
            "build",
            "--quiet",
            "--bin",
            "tessera",
            "--bin",
            "tessera-shard",
        ])
        .current_dir(workspace_root());
    let started = std::time::Instant::now();
    let mut build = Process::spawn("cargo build", command)?;
    let Some(status) = build.wait_timeout(BUILD_TIMEOUT)? else {
        bail!(
            "cargo build did not finish within {BUILD_TIMEOUT:?}; its output:\n{}",
            build.log_tail()
        );
    };
    if !status.success() {
        bail!("cargo build failed ({status}):\n{}", build.log_tail());
    }

    eprintln!(
        "cargo build of tessera and tessera-shard took {:.1?}",
        started.elapsed()
    );

    let dir = profile_dir();
    let binaries = Binaries {
        coordinator: dir.join("tessera"),
        shard: dir.join("tessera-shard"),
    };
    for path in [&binaries.coordinator, &binaries.shard] {
        if !path.is_file() {
            bail!(
                "cargo build succeeded but {} does not exist",
                path.display()
            );
        }
    }
    Ok(binaries)
}
