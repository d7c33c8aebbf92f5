//! End-to-end tests of Tessera: real `tessera serve` and `tessera-shard
//! serve` processes on loopback, driven through the public gRPC API
//! (`tessera-client`), the internal shard API and the command line.
//!
//! This library is the harness the tests in `tests/` share:
//! - [`fixtures`]: the model, its golden greedy outputs, and the check of a
//!   server's tokens against them;
//! - [`binaries`]: the executables under test, built on first use;
//! - [`cluster`]: coordinators and shards started for a test;
//! - [`checks`]: assertions on gRPC statuses;
//! - [`process`]: child processes that die with the test, and pid probes.
//!
//! Every test returns early with "SKIPPED: …" when the model is absent
//! outside CI (`scripts/fetch-model.sh` fetches it); in CI that is a
//! failure.

pub mod binaries;
pub mod checks;
pub mod cluster;
pub mod fixtures;
pub mod process;

pub use checks::expect_status;
pub use cluster::{Coordinator, ServeOptions, Shard, CALL_TIMEOUT};
pub use fixtures::{check_greedy, check_greedy_prefix, setup, Golden, GoldenPrompt, Setup};
