//! End-to-end tests of the `quietdesk` binary, run the way users run it: a fresh data dir,
//! real SQLite files, a private PostgreSQL database (qd-testkit), the real CLI.
// Test code: a failed unwrap is a failed test with its location, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bad_input;
mod boundaries;
mod corpus;
mod feedback;
mod imap;
mod import_search;
mod privacy;
mod retention;
mod serve;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// One quietdesk installation: a data dir and its environment.
pub struct Qd {
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
    pub _pg: Option<qd_testkit::PgDatabase>,
}

impl Qd {
    pub fn sqlite() -> Qd {
        Qd {
            dir: tempfile::tempdir().unwrap(),
            env: vec![],
            _pg: None,
        }
    }

    pub async fn postgres() -> Qd {
        let pg = qd_testkit::PgDatabase::create()
            .await
            .expect("PostgreSQL for the end-to-end tests");
        Qd {
            dir: tempfile::tempdir().unwrap(),
            env: vec![("QUIETDESK__DATABASE__URL".into(), pg.url().to_string())],
            _pg: Some(pg),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_quietdesk"));
        cmd.arg("--data-dir").arg(self.data_dir()).args(args);
        cmd.env_remove("RUST_LOG")
            .env("QUIETDESK__LOG__LEVEL", "warn");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run quietdesk")
    }

    /// Runs a command that must succeed and print JSON.
    pub fn json(&self, args: &[&str]) -> Value {
        self.json_with(args, &[])
    }

    /// [`Qd::json`] with extra environment variables for this one run.
    pub fn json_with(&self, args: &[&str], env: &[(&str, &str)]) -> Value {
        let out = self
            .command(args)
            .envs(env.iter().copied())
            .output()
            .expect("run quietdesk");
        assert!(
            out.status.success(),
            "quietdesk {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "quietdesk {args:?} printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    pub fn search(&self, query: &str, limit: usize) -> Vec<Value> {
        let limit = limit.to_string();
        match self.json(&["search", query, "--limit", &limit, "--json"]) {
            Value::Array(hits) => hits,
            other => panic!("search printed {other}"),
        }
    }
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// Runs an async scenario on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::Qd::sqlite()).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::Qd::postgres().await).await;
            }
        }
    };
}

/// A child process that is killed when the test ends, also when it panics, so a failed
/// assertion never leaves a `quietdesk serve` running.
/// Sends `signal` (`-TERM`, `-KILL`) to `child` and waits up to 20 s for it to end.
pub fn kill_and_reap(child: &mut std::process::Child, signal: &str) -> std::process::ExitStatus {
    let ok = std::process::Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("quietdesk did not stop within 20 s of {signal}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Files one message straight into the store at `now` (as a component other than the
/// CLI would), with the default ticket reference.
pub async fn store_directly(
    store: &qd_store::Store,
    msg: qd_store::NewMessage,
    now: chrono::DateTime<chrono::Utc>,
) {
    let fmt = qd_core::TicketRefFormat::new("[#QD-{n}]").unwrap();
    store
        .store_batch(
            &mut [msg],
            None,
            &qd_store::BatchSettings {
                ticket_ref: &fmt,
                now,
            },
        )
        .await
        .unwrap();
}
