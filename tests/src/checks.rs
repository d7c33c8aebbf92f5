//! Assertions on gRPC answers that say what went wrong when they fail.

use std::fmt::Debug;

use anyhow::{bail, Result};
use tessera_client::{ClientError, Code};

/// Checks that `result` failed with status `code` and a message containing
/// `phrase` (ignoring case); `what` names the request in the failure.
pub fn expect_status<T: Debug>(
    result: Result<T, ClientError>,
    code: Code,
    phrase: &str,
    what: &str,
) -> Result<()> {
    let err = match result {
        Ok(answer) => bail!("{what}: expected {code:?}, got an answer: {answer:?}"),
        Err(err) => err,
    };
    let ClientError::Status { code: got, message } = &err else {
        bail!("{what}: expected status {code:?}, got {err}");
    };
    if *got != code {
        bail!("{what}: expected {code:?}, got {got:?}: {message}");
    }
    if !message.to_lowercase().contains(&phrase.to_lowercase()) {
        bail!("{what}: the {code:?} message {message:?} does not mention {phrase:?}");
    }
    Ok(())
}
