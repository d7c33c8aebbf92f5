//! Child processes that cannot outlive a test, and probes of processes by
//! pid.
//!
//! A [`Process`] owns one child. Its standard output is read line by line by
//! a thread (the first JSON line is the child's `ready` announcement); its
//! standard error is kept as a bounded tail for failure messages. Dropping a
//! `Process` kills the child with SIGKILL and reaps it, so a test that fails
//! or panics half-way leaves nothing running.
//!
//! Children also get SIGKILL should the thread that started them die
//! (`PR_SET_PDEATHSIG`), which covers a test process killed from outside.
//! Tests start children from their own thread and drop them before it ends.
//!
//! Every wait here is bounded. Linux only (`/proc`, `prctl`).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// Most bytes of a child's standard error kept for failure messages.
const LOG_TAIL_BYTES: usize = 32 * 1024;

/// How often bounded waits look again.
const POLL: Duration = Duration::from_millis(50);

/// The last [`LOG_TAIL_BYTES`] of a stream, shared with its reader thread.
type Tail = Arc<Mutex<VecDeque<u8>>>;

/// A child process, killed and reaped when dropped.
pub struct Process {
    /// What the test calls it, for messages.
    name: String,
    child: Child,
    /// Standard output lines the child printed, in order.
    stdout: mpsc::Receiver<String>,
    stderr: Tail,
    /// The exit status, once reaped.
    status: Option<ExitStatus>,
}

impl Process {
    /// Starts `command` with piped standard streams (standard input stays
    /// open until the `Process` is dropped, so a child that watches it keeps
    /// running).
    pub fn spawn(name: &str, mut command: Command) -> Result<Self> {
        // SAFETY: the hook runs in the forked child before exec and calls
        // only prctl(2), which is async-signal-safe and touches no memory
        // shared with the parent.
        unsafe {
            command.pre_exec(|| {
                // Should the test process die without running its
                // destructors (killed by a timeout), its children die too.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {name} ({command:?})"))?;

        let stdout = child.stdout.take().context("stdout was not captured")?;
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });

        let stderr = child.stderr.take().context("stderr was not captured")?;
        let tail = Tail::default();
        let writer = Arc::clone(&tail);
        thread::spawn(move || keep_tail(stderr, &writer));

        Ok(Process {
            name: name.to_owned(),
            child,
            stdout: rx,
            stderr: tail,
            status: None,
        })
    }

    /// Starts `command` and waits up to `timeout` for the JSON line
    /// `{"event":"ready",…}` on its standard output, which it returns.
    pub fn spawn_ready(name: &str, command: Command, timeout: Duration) -> Result<(Self, Value)> {
        let mut process = Process::spawn(name, command)?;
        let ready = process.wait_ready(timeout)?;
        Ok((process, ready))
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines the child wrote to standard error.
    pub fn log_tail(&self) -> String {
        let tail: Vec<u8> = self
            .stderr
            .lock()
            .map(|t| t.iter().copied().collect())
            .unwrap_or_default();
        String::from_utf8_lossy(&tail).into_owned()
    }

    /// Waits for the ready line; any other line before it is an error.
    fn wait_ready(&mut self, timeout: Duration) -> Result<Value> {
        let line = match self.stdout.recv_timeout(timeout) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                bail!(
                    "{} printed no ready line within {timeout:?}; its log:\n{}",
                    self.name,
                    self.log_tail()
                )
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = self.wait_timeout(Duration::from_secs(5)).ok().flatten();
                bail!(
                    "{} exited ({status:?}) before it was ready; its log:\n{}",
                    self.name,
                    self.log_tail()
                )
            }
        };
        let ready: Value = serde_json::from_str(&line).with_context(|| {
            format!(
                "{} printed {line:?} instead of a JSON ready line",
                self.name
            )
        })?;
        if ready["event"] != "ready" {
            bail!("{} printed {line:?}, not a ready event", self.name);
        }
        Ok(ready)
    }

    /// Every standard output line printed so far, waiting at most `timeout`
    /// for the stream to close (use after the child exited).
    pub fn stdout_lines(&self, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut lines = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.stdout.recv_timeout(left) {
                Ok(line) => lines.push(line),
                Err(_) => break,
            }
        }
        lines
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the child, unless it was
    /// already reaped.
    pub fn signal(&mut self, signal: i32) -> Result<()> {
        if self.try_reap()?.is_some() {
            bail!("{} has already exited", self.name);
        }
        send_signal(self.pid(), signal)
    }

    /// Waits up to `timeout` for the child to exit; `None` if it still runs.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_reap()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            thread::sleep(POLL);
        }
    }

    /// The exit status if the child has exited (reaping it).
    fn try_reap(&mut self) -> Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.child.try_wait()?;
        }
        Ok(self.status)
    }

    /// Like [`wait_timeout`](Self::wait_timeout), for async code: the
    /// runtime keeps running meanwhile, so the test's own connections to
    /// the child (which a graceful shutdown waits on) stay responsive.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_reap()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Sends SIGTERM and waits up to `timeout` for the child to exit; an
    /// error (the child is then killed) if it does not.
    pub async fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus> {
        self.signal(libc::SIGTERM)?;
        match self.wait_exit(timeout).await? {
            Some(status) => Ok(status),
            None => {
                self.kill();
                bail!(
                    "{} did not exit within {timeout:?} of SIGTERM; its log:\n{}",
                    self.name,
                    self.log_tail()
                )
            }
        }
    }

    /// Kills the child with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Copies `stream` into `tail`, keeping only its last bytes.
fn keep_tail(mut stream: impl Read, tail: &Tail) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        let Ok(mut tail) = tail.lock() else { break };
        tail.extend(&buf[..n]);
        let excess = tail.len().saturating_sub(LOG_TAIL_BYTES);
        tail.drain(..excess);
    }
}

/// Sends `signal` to `pid`.
pub fn send_signal(pid: u32, signal: i32) -> Result<()> {
    let pid = i32::try_from(pid).context("pid out of range")?;
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let rc = unsafe { libc::kill(pid, signal) };
    if rc != 0 {
        bail!(
            "kill({pid}, {signal}) failed: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// The state letter and parent pid of `pid` from `/proc/PID/stat`, or `None`
/// once no such process exists.
fn stat(pid: u32) -> Option<(char, u32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: split after it.
    let (_, rest) = text.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Whether `pid` is a live process (a zombie has exited, so it is not).
pub fn is_alive(pid: u32) -> bool {
    matches!(stat(pid), Some((state, _)) if state != 'Z' && state != 'X')
}

/// The command name of `pid` (`/proc/PID/comm`), if it still exists.
pub fn command_name(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Live processes whose parent is `parent` and whose command name is `name`.
pub fn children_named(parent: u32, name: &str) -> Result<Vec<u32>> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").context("cannot list /proc")? {
        let Some(pid) = entry?
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let is_child = matches!(stat(pid), Some((_, ppid)) if ppid == parent);
        if is_child && is_alive(pid) && command_name(pid).as_deref() == Some(name) {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    Ok(pids)
}

/// Waits up to `timeout` for every one of `pids` to be gone; returns the
/// ones still alive then.
pub async fn wait_gone(pids: &[u32], timeout: Duration) -> Vec<u32> {
    let deadline = Instant::now() + timeout;
    loop {
        let alive = still_alive(pids);
        if alive.is_empty() || Instant::now() >= deadline {
            return alive;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// [`wait_gone`] for code that cannot await (such as `Drop`).
pub fn wait_gone_blocking(pids: &[u32], timeout: Duration) -> Vec<u32> {
    let deadline = Instant::now() + timeout;
    loop {
        let alive = still_alive(pids);
        if alive.is_empty() || Instant::now() >= deadline {
            return alive;
        }
        thread::sleep(POLL);
    }
}

fn still_alive(pids: &[u32]) -> Vec<u32> {
    pids.iter().copied().filter(|&p| is_alive(p)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_is_seen_alive_then_gone_once_dropped() -> Result<()> {
        let mut command = Command::new("sleep");
        command.arg("30");
        let child = Process::spawn("sleep", command)?;
        let pid = child.pid();
        assert!(is_alive(pid));
        assert_eq!(command_name(pid).as_deref(), Some("sleep"));
        assert!(children_named(std::process::id(), "sleep")?.contains(&pid));

        drop(child);
        assert!(!is_alive(pid));
        assert!(wait_gone_blocking(&[pid], Duration::ZERO).is_empty());
        Ok(())
    }

    #[test]
    fn no_ready_line_is_an_error_not_a_hang() -> Result<()> {
        let mut command = Command::new("sh");
        command.args(["-c", "echo not-json; sleep 30"]);
        let started = Instant::now();
        let err = Process::spawn_ready("sh", command, Duration::from_secs(10)).err();
        assert!(err.is_some_and(|e| e.to_string().contains("not-json")));
        assert!(started.elapsed() < Duration::from_secs(10));

        let mut command = Command::new("true");
        command.arg("exits at once");
        assert!(Process::spawn_ready("true", command, Duration::from_secs(10)).is_err());
        Ok(())
    }
}
