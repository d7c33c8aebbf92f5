//! Real clusters on loopback: a coordinator (`tessera serve`) that starts
//! its own shards or joins shards the test started (`tessera-shard serve`).
//!
//! Every server listens on 127.0.0.1 with a port the OS picks; every process
//! is owned by a [`Process`], so it dies with the test. Shards that a
//! coordinator started are not the test's children: [`Coordinator`] finds
//! their pids under `/proc` and, when dropped, kills any that outlived it.

use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tessera_client::Client;
use tessera_proto::shard::v1 as shard_pb;
use tessera_proto::ShardClient;
use tonic::transport::Channel;

use crate::fixtures::Setup;
use crate::process::{self, Process};

/// Longest a coordinator or shard may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// Longest a process may take to exit once told to.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Deadline of every call of the clients made here, streams included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// The command name of shard processes, as `/proc/PID/comm` shows it.
const SHARD_COMM: &str = "tessera-shard";

/// Flags of `tessera serve`; [`ServeOptions::tp`] gives the defaults.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Shards the coordinator starts itself (`--tp`).
    pub tp: usize,
    /// Addresses of shards the test started (`--shards`); overrides `tp`.
    pub shards: Vec<String>,
    /// Compute threads per shard the coordinator starts. Default 1.
    pub threads: usize,
    /// KV cache per shard, in MiB. Default 128: room for a few thousand
    /// positions, and little memory when tests run side by side.
    pub kv_cache_mib: usize,
    /// `--max-queue`, when set.
    pub max_queue: Option<usize>,
    /// `--max-batch-size`, when set.
    pub max_batch_size: Option<usize>,
    /// `--max-prefill-tokens`, when set (small values force chunked prefill).
    pub max_prefill_tokens: Option<usize>,
}

impl ServeOptions {
    /// A coordinator that starts `tp` shards of one thread each.
    pub fn tp(tp: usize) -> Self {
        ServeOptions {
            tp,
            shards: Vec::new(),
            threads: 1,
            kv_cache_mib: 128,
            max_queue: None,
            max_batch_size: None,
            max_prefill_tokens: None,
        }
    }

    /// A coordinator that joins the running `shards`, in rank order.
    pub fn shards(shards: &[Shard]) -> Self {
        let addrs = shards.iter().map(|s| s.listen.clone()).collect();
        ServeOptions {
            shards: addrs,
            ..ServeOptions::tp(shards.len())
        }
    }

    fn args(&self, setup: &Setup) -> Vec<String> {
        let mut args = vec![
            "serve".to_owned(),
            "--listen".to_owned(),
            "127.0.0.1:0".to_owned(),
        ];
        args.extend(["--model".to_owned(), setup.model.display().to_string()]);
        args.extend(["--kv-cache-mib".to_owned(), self.kv_cache_mib.to_string()]);
        if self.shards.is_empty() {
            args.extend(["--tp".to_owned(), self.tp.to_string()]);
            args.extend(["--threads".to_owned(), self.threads.to_string()]);
        } else {
            args.extend(["--shards".to_owned(), self.shards.join(",")]);
        }
        if let Some(n) = self.max_queue {
            args.extend(["--max-queue".to_owned(), n.to_string()]);
        }
        if let Some(n) = self.max_batch_size {
            args.extend(["--max-batch-size".to_owned(), n.to_string()]);
        }
        if let Some(n) = self.max_prefill_tokens {
            args.extend(["--max-prefill-tokens".to_owned(), n.to_string()]);
        }
        args
    }
}

/// A running `tessera serve`.
pub struct Coordinator {
    /// Its public API, `127.0.0.1:PORT`.
    pub addr: String,
    /// Every shard process it was seen to start (it starts new ones when it
    /// restarts a failed group); none with `--shards`.
    seen_shards: Vec<u32>,
    process: Process,
}

impl Coordinator {
    /// Starts a coordinator and waits until it serves.
    pub fn start(setup: &Setup, options: &ServeOptions) -> Result<Self> {
        let mut command = Command::new(&setup.binaries.coordinator);
        command.args(options.args(setup));
        let (process, ready) = Process::spawn_ready("tessera serve", command, READY_TIMEOUT)?;
        let addr = ready["listen"]
            .as_str()
            .context("the ready line has no listen address")?
            .to_owned();
        if !addr.starts_with("127.0.0.1:") {
            bail!("the coordinator listens on {addr}, not on loopback");
        }

        let mut coordinator = Coordinator {
            addr,
            seen_shards: Vec::new(),
            process,
        };
        let shards = coordinator.shard_pids()?;
        let expected = if options.shards.is_empty() {
            options.tp
        } else {
            0
        };
        if shards.len() != expected {
            bail!(
                "the coordinator runs {} shard processes, expected {expected}",
                shards.len()
            );
        }
        Ok(coordinator)
    }

    /// A client of the public API whose calls time out after
    /// [`CALL_TIMEOUT`].
    pub async fn client(&self) -> Result<Client> {
        let client = Client::builder()
            .timeout(CALL_TIMEOUT)
            .connect(&self.addr)
            .await?;
        Ok(client)
    }

    /// The coordinator's pid.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The pids of the shard processes it runs now, in increasing order.
    pub fn shard_pids(&mut self) -> Result<Vec<u32>> {
        let pids = process::children_named(self.process.pid(), SHARD_COMM)?;
        for &pid in &pids {
            if !self.seen_shards.contains(&pid) {
                self.seen_shards.push(pid);
            }
        }
        Ok(pids)
    }

    /// The last lines of its log (and of the shards it started).
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }

    /// The underlying process, to signal or wait for.
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }

    /// Stops the coordinator as an operator would (SIGTERM) and checks that
    /// it exits cleanly within a few seconds and that no shard it started
    /// outlives it.
    pub async fn stop(&mut self) -> Result<()> {
        self.shard_pids()?;
        let status = self.process.terminate(STOP_TIMEOUT).await?;
        if !status.success() {
            bail!(
                "the coordinator exited with {status} after SIGTERM; its log:\n{}",
                self.log_tail()
            );
        }
        let left = process::wait_gone(&self.seen_shards, STOP_TIMEOUT).await;
        if !left.is_empty() {
            bail!(
                "shard processes {left:?} outlived their coordinator; its log:\n{}",
                self.log_tail()
            );
        }
        Ok(())
    }

    /// Kills the coordinator with SIGKILL, then any shard of its that is
    /// still alive a few seconds later.
    pub fn kill(&mut self) {
        let _ = self.shard_pids();
        self.process.kill();
        let left = process::wait_gone_blocking(&self.seen_shards, Duration::from_secs(3));
        for pid in left {
            // The pid may have been reused since; only a shard is killed.
            if process::command_name(pid).as_deref() == Some(SHARD_COMM) {
                let _ = process::send_signal(pid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running `tessera-shard serve`, started by the test.
pub struct Shard {
    /// Its control-plane address, `127.0.0.1:PORT`.
    pub listen: String,
    /// Its collective address.
    pub collective: String,
    process: Process,
}

impl Shard {
    /// Starts a shard with `threads` compute threads and waits until it
    /// listens.
    pub fn start(setup: &Setup, threads: usize) -> Result<Self> {
        let mut command = Command::new(&setup.binaries.shard);
        command.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--collective-listen",
            "127.0.0.1:0",
        ]);
        command.args(["--threads", &threads.to_string(), "--exit-with-stdin"]);
        let (process, ready) = Process::spawn_ready("tessera-shard serve", command, READY_TIMEOUT)?;
        let field = |name: &str| -> Result<String> {
            let value = ready[name]
                .as_str()
                .with_context(|| format!("the shard's ready line has no {name}"))?;
            if !value.starts_with("127.0.0.1:") {
                bail!("the shard's {name} address {value} is not on loopback");
            }
            Ok(value.to_owned())
        };
        Ok(Shard {
            listen: field("listen")?,
            collective: field("collective")?,
            process,
        })
    }

    /// A client of the shard's internal API.
    pub async fn control(&self) -> Result<ShardClient<Channel>> {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", self.listen))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .connect()
            .await
            .with_context(|| format!("cannot reach the shard at {}", self.listen))?;
        Ok(ShardClient::new(channel))
    }

    /// The shard's Health answer.
    pub async fn health(&self) -> Result<shard_pb::HealthResponse> {
        let response = self
            .control()
            .await?
            .health(shard_pb::HealthRequest {})
            .await?;
        Ok(response.into_inner())
    }

    /// The shard's pid.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The underlying process, to signal or wait for.
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }
}
