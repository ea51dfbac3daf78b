//! [`SmtpSink`]: a private SMTP server (Debian `python3-aiosmtpd`) on a free loopback
//! port that captures what we send, and can refuse mail or be down on demand.
//!
//! A small handler (written into the sink's temp dir) stores each accepted message as a
//! file `NNNNNN.eml` in `mail/`, preceded by `X-MailFrom:` and `X-RcptTo:` lines that
//! record the SMTP envelope. In [`SinkMode::Refuse`] it answers every `RCPT TO` with
//! `550 5.1.1`, in [`SinkMode::TempFail`] with `451 4.3.0`. In [`SinkMode::Accept`] a
//! recipient whose local part starts with `refused` gets `550 5.1.1`, one that starts with
//! `deferred` gets `452 4.2.2` until [`SmtpSink::take_deferred`]. [`SmtpSink::stop`] takes it
//! down (connections are refused) and [`SmtpSink::start_again`] brings it back on the
//! same port. The process is killed and reaped on drop.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

const PYTHON: &str = "/usr/bin/python3";
const READY_DEADLINE: Duration = Duration::from_secs(15);

const HANDLER: &str = r#"
import os

class Sink:
    def __init__(self, maildir, mode):
        self.maildir = maildir
        self.mode = mode
        os.makedirs(maildir, exist_ok=True)
        self.count = len(os.listdir(maildir))
        self.deferred_until = os.path.join(os.path.dirname(maildir), "deferred-take")

    @classmethod
    def from_cli(cls, parser, *args):
        return cls(*args)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.mode == "refuse":
            return "550 5.1.1 <%s>: mailbox unavailable" % address
        if self.mode == "tempfail":
            return "451 4.3.0 try again later"
        local = address.split("@")[0].lower()
        if local.startswith("refused"):
            return "550 5.1.1 <%s>: no such user" % address
        if local.startswith("deferred") and not os.path.exists(self.deferred_until):
            return "452 4.2.2 <%s>: mailbox full" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        data = envelope.original_content or envelope.content
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        head = "X-MailFrom: <%s>\r\nX-RcptTo: %s\r\n" % (
            envelope.mail_from or "", ",".join(envelope.rcpt_tos))
        tmp = os.path.join(self.maildir, ".%06d.tmp" % self.count)
        with open(tmp, "wb") as f:
            f.write(head.encode("utf-8"))
            f.write(data)
        os.rename(tmp, os.path.join(self.maildir, "%06d.eml" % self.count))
        return "250 2.0.0 queued as %06d" % self.count
"#;

/// How the sink answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkMode {
    /// Accepts and stores every message.
    Accept,
    /// Refuses every recipient with a permanent `550 5.1.1`.
    Refuse,
    /// Refuses every recipient with a temporary `451 4.3.0`.
    TempFail,
}

impl SinkMode {
    fn arg(self) -> &'static str {
        match self {
            SinkMode::Accept => "accept",
            SinkMode::Refuse => "refuse",
            SinkMode::TempFail => "tempfail",
        }
    }
}

/// A message the sink accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// `MAIL FROM` (empty for the null reverse-path).
    pub mail_from: String,
    /// `RCPT TO` addresses.
    pub rcpt_to: Vec<String>,
    /// The message as received (after DATA dot-unstuffing).
    pub raw: Vec<u8>,
}

/// What went wrong starting the sink.
#[derive(Debug, thiserror::Error)]
pub enum SmtpSinkError {
    #[error(
        "the SMTP sink needs Debian's python3-aiosmtpd under {PYTHON} (`apt-get install -y \
         python3-aiosmtpd`; .ci/run installs it): {0}"
    )]
    Missing(String),
    #[error("cannot start the SMTP sink: {0}")]
    Io(#[from] std::io::Error),
    #[error("the SMTP sink on port {port} exited early ({status}); log: {log}")]
    Exited {
        port: u16,
        status: String,
        log: String,
    },
    #[error("the SMTP sink on port {port} was not ready within {READY_DEADLINE:?}; log: {log}")]
    NotReady { port: u16, log: String },
}

/// A running (or stopped) private SMTP server.
#[derive(Debug)]
pub struct SmtpSink {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl SmtpSink {
    /// Starts a sink that accepts everything.
    pub fn start() -> Result<SmtpSink, SmtpSinkError> {
        Self::start_with(SinkMode::Accept)
    }

    /// Starts a sink in `mode` on a free port.
    pub fn start_with(mode: SinkMode) -> Result<SmtpSink, SmtpSinkError> {
        let mut sink = Self::stopped()?;
        sink.spawn(mode)?;
        Ok(sink)
    }

    /// A sink that is not started yet: its port refuses connections until
    /// [`SmtpSink::start_again`] (for "server down" tests).
    pub fn stopped() -> Result<SmtpSink, SmtpSinkError> {
        let probe = Command::new(PYTHON)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| SmtpSinkError::Missing(e.to_string()))?;
        if !probe.status.success() {
            return Err(SmtpSinkError::Missing(
                String::from_utf8_lossy(&probe.stderr).trim().to_string(),
            ));
        }
        let dir = tempfile::Builder::new().prefix("qd-smtp-").tempdir()?;
        std::fs::write(dir.path().join("qd_sink.py"), HANDLER)?;
        std::fs::create_dir_all(dir.path().join("mail"))?;
        Ok(SmtpSink {
            dir,
            port: free_port(),
            child: None,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// Whether the server process runs.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Takes the server down: connections to its port are refused until
    /// [`SmtpSink::start_again`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, in `mode` (stopping it first if it runs).
    pub fn start_again(&mut self, mode: SinkMode) -> Result<(), SmtpSinkError> {
        self.stop();
        self.spawn(mode)
    }

    /// From now on, `deferred…` recipients are taken like any other (their mailbox has
    /// room again).
    pub fn take_deferred(&self) -> std::io::Result<()> {
        std::fs::write(self.dir.path().join("deferred-take"), b"")
    }

    /// The messages accepted so far, oldest first.
    pub fn messages(&self) -> Vec<Captured> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("mail"))
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files.iter().filter_map(|p| read_captured(p)).collect()
    }

    /// Waits until at least `n` messages were accepted, or `timeout` passes; returns
    /// what is there.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Captured> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.messages();
            if got.len() >= n || Instant::now() >= deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sink.log"))
            .unwrap_or_default()
            .chars()
            .rev()
            .take(2000)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect()
    }

    fn spawn(&mut self, mode: SinkMode) -> Result<(), SmtpSinkError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("sink.log"))?;
        let child = Command::new(PYTHON)
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{}", self.port))
            .args(["-c", "qd_sink.Sink"])
            .arg(self.dir.path().join("mail"))
            .arg(mode.arg())
            .env("PYTHONPATH", self.dir.path())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    self.child = None;
                    return Err(SmtpSinkError::Exited {
                        port: self.port,
                        status: status.to_string(),
                        log: self.log(),
                    });
                }
            }
            if banner_ok(self.port) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let log = self.log();
                self.stop();
                return Err(SmtpSinkError::NotReady {
                    port: self.port,
                    log,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Connects and reads the `220` greeting, then says QUIT.
fn banner_ok(port: u16) -> bool {
    let Ok(stream) = TcpStream::connect_timeout(
        &(Ipv4Addr::LOCALHOST, port).into(),
        Duration::from_millis(500),
    ) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut line = String::new();
    let ok = BufReader::new(&stream).read_line(&mut line).is_ok() && line.starts_with("220");
    let _ = std::io::Write::write_all(&mut &stream, b"QUIT\r\n");
    ok
}

fn read_captured(path: &Path) -> Option<Captured> {
    let bytes = std::fs::read(path).ok()?;
    let mut rest: &[u8] = &bytes;
    let mut mail_from = String::new();
    let mut rcpt_to = Vec::new();
    for _ in 0..2 {
        let nl = rest.iter().position(|&b| b == b'\n')?;
        let line = String::from_utf8_lossy(&rest[..nl]).trim_end().to_string();
        if let Some(v) = line.strip_prefix("X-MailFrom: ") {
            mail_from = v.trim_start_matches('<').trim_end_matches('>').to_string();
        } else if let Some(v) = line.strip_prefix("X-RcptTo: ") {
            rcpt_to = v
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
        }
        rest = &rest[nl + 1..];
    }
    Some(Captured {
        mail_from,
        rcpt_to,
        raw: rest.to_vec(),
    })
}
