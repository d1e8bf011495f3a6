//! Running the audited sample server as a child process (for crash and restart tests).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running `audited-sample` process.
pub struct SampleProcess {
    /// The child.
    pub child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Lines it printed before `listening on` (e.g. its recovery report).
    pub banner: Vec<String>,
    lines: mpsc::Receiver<String>,
}

impl SampleProcess {
    /// Start `exe` (the `audited-sample` binary) on `spool` with `key` and `durability`.
    pub fn start(exe: &Path, spool: &Path, key: &Path, durability: &str) -> std::io::Result<Self> {
        let mut child = Command::new(exe)
            .args([
                "--spool",
                &spool.display().to_string(),
                "--key",
                &key.display().to_string(),
                "--durability",
                durability,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().ok_or_else(|| std::io::Error::other("no stdout"))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut banner = Vec::new();
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .map_err(|_| std::io::Error::other(format!("no 'listening on' line; saw {banner:?}")))?;
            if let Some(a) = line.strip_prefix("listening on ") {
                let addr = a.parse().map_err(std::io::Error::other)?;
                return Ok(Self { child, addr, banner, lines: rx });
            }
            banner.push(line);
        }
    }

    /// SIGKILL: no chance to flush, seal or release anything but by the kernel.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit; returns the lines printed after start.
    pub fn terminate(mut self) -> std::io::Result<Vec<String>> {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status()?;
        if !status.success() {
            return Err(std::io::Error::other("kill -TERM failed"));
        }
        let exit = self.child.wait()?;
        if !exit.success() {
            return Err(std::io::Error::other(format!("server exited with {exit}")));
        }
        Ok(self.lines.try_iter().collect())
    }
}

impl Drop for SampleProcess {
    /// A test that panics before stopping its server does not leave it running (holding
    /// the test harness's output pipe open, so the run never ends).
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
