//! A private clamd (Debian `clamav-daemon`) on a free loopback port, for virus tests.
//!
//! No signature database can be downloaded in CI, and clamd refuses an empty database
//! directory, so the caller hands the signature files (`.hdb`, `.hsb`, `.ndb`) it wrote
//! itself. The daemon runs in the foreground as our child; dropping the value kills it
//! and waits for it (orphans are not reaped on these machines).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian installs the daemon.
const CLAMD: &str = "/usr/sbin/clamd";
/// Loading even a tiny database takes a moment; a busy CI machine needs more.
const READY_DEADLINE: Duration = Duration::from_secs(60);

/// A running private clamd.
pub struct Clamd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Clamd {
    /// Starts clamd with a database directory holding `files` (name, contents) and
    /// waits until it answers PING.
    pub fn start(files: &[(&str, &[u8])]) -> std::io::Result<Clamd> {
        if !Path::new(CLAMD).exists() {
            return Err(std::io::Error::other(format!(
                "{CLAMD} is missing: install Debian's clamav-daemon (`apt-get install -y \
                 clamav-daemon`; .ci/run does)"
            )));
        }
        let dir = tempfile::tempdir()?;
        let db = dir.path().join("db");
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&db)?;
        std::fs::create_dir(&tmp)?;
        for (name, contents) in files {
            std::fs::write(db.join(name), contents)?;
        }
        let port = crate::free_port();
        let conf = dir.path().join("clamd.conf");
        std::fs::write(
            &conf,
            format!(
                "Foreground yes\nDatabaseDirectory {}\nTemporaryDirectory {}\nLogFile {}\n\
                 PidFile {}\nTCPSocket {port}\nTCPAddr 127.0.0.1\n",
                db.display(),
                tmp.display(),
                dir.path().join("clamd.log").display(),
                dir.path().join("clamd.pid").display(),
            ),
        )?;
        let child = Command::new(CLAMD)
            .arg("--config-file")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let mut clamd = Clamd { child, port, dir };
        clamd.wait_ready()?;
        Ok(clamd)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("clamd.log")).unwrap_or_default()
    }

    fn wait_ready(&mut self) -> std::io::Result<()> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(std::io::Error::other(format!(
                    "clamd exited early ({status}); log:\n{}",
                    self.log()
                )));
            }
            if self.ping() {
                return Ok(());
            }
            if start.elapsed() > READY_DEADLINE {
                return Err(std::io::Error::other(format!(
                    "clamd did not answer PING on port {} within {READY_DEADLINE:?}; log:\n{}",
                    self.port,
                    self.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.write_all(b"zPING\0").is_err() {
            return false;
        }
        let mut reply = Vec::new();
        let _ = s.read_to_end(&mut reply);
        reply.starts_with(b"PONG")
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The database directory (for tests that add files; clamd reads them at start).
    pub fn database_dir(&self) -> PathBuf {
        self.dir.path().join("db")
    }
}

impl Drop for Clamd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
