//! `serve` answers health checks and stops cleanly on SIGTERM.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::{kill_and_reap, KillOnDrop, Qd};

fn get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// Polls `/healthz` on `port` until it answers and returns the response; panics, with
/// `log()`, if `child` exits first or `within` passes.
fn wait_healthy(
    child: &mut std::process::Child,
    port: u16,
    within: Duration,
    log: impl Fn() -> String,
) -> String {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("serve exited early with {status}: {}", log());
        }
        if let Some(r) = get(port, "/healthz") {
            return r;
        }
        assert!(Instant::now() < deadline, "serve never answered: {}", log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serve_reports_healthy_and_stops_on_sigterm() {
    let qd = Qd::sqlite();
    let port = qd_testkit::free_port();
    let mut child = qd
        .command(&["serve"])
        .env("QUIETDESK__HTTP__LISTEN", format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let response = wait_healthy(&mut child, port, Duration::from_secs(30), String::new);
    assert!(
        response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"),
        "{response}"
    );
    assert!(response.ends_with("ok\n"));

    let status = kill_and_reap(&mut child, "-TERM");
    assert!(status.success(), "serve exited with {status}");
    assert!(qd.data_dir().join("quietdesk.db").exists());
}

/// `serve` started before its PostgreSQL is up (a reboot, a restart, a failover): it waits,
/// says so in its log, and starts once the database answers at the address it was given;
/// SIGTERM still stops it cleanly. The first attempt takes the pool's 30 s acquire timeout
/// to give up, so this test takes about 35 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_waits_for_a_database_that_is_not_up_yet() {
    let qd = Qd::postgres().await;
    let pg_url = qd._pg.as_ref().unwrap().url().to_string();
    // postgres://user@127.0.0.1:PORT/db
    let authority = pg_url
        .rsplit('@')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    let target: u16 = authority.rsplit(':').next().unwrap().parse().unwrap();
    let port = qd_testkit::free_port();
    let url = pg_url.replacen(&format!(":{target}/"), &format!(":{port}/"), 1);
    let http = qd_testkit::free_port();
    let log_path = qd.dir.path().join("serve.log");
    let mut child = KillOnDrop(
        qd.command(&["serve"])
            .env("QUIETDESK__DATABASE__URL", &url)
            .env("QUIETDESK__HTTP__LISTEN", format!("127.0.0.1:{http}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap(),
    );
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(90);
    while !log().contains("database unavailable; waiting for it") {
        if let Some(s) = child.0.try_wait().unwrap() {
            panic!("serve exited with {s} instead of waiting: {}", log());
        }
        assert!(
            Instant::now() < deadline,
            "serve never said it waits: {}",
            log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        get(http, "/healthz").is_none(),
        "serving without a database"
    );

    // The database appears where serve was told to find it.
    let _db = qd_testkit::StallProxy::start_on(port, target).unwrap();
    let response = wait_healthy(&mut child.0, http, Duration::from_secs(90), log);
    assert!(response.contains(" 200 "), "{response}");
    let status = kill_and_reap(&mut child.0, "-TERM");
    assert!(status.success(), "serve exited with {status}: {}", log());
}

/// A database that will never answer this way (here: one that does not exist) is an
/// error at once, not a wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_stops_at_once_on_a_database_that_does_not_exist() {
    let qd = Qd::postgres().await;
    let pg = qd._pg.as_ref().unwrap();
    let url = pg.url().replace(pg.name(), "qd_no_such_database");
    let started = Instant::now();
    let out = qd
        .command(&["serve"])
        .env("QUIETDESK__DATABASE__URL", &url)
        .env(
            "QUIETDESK__HTTP__LISTEN",
            format!("127.0.0.1:{}", qd_testkit::free_port()),
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("qd_no_such_database"), "{stderr}");
    assert!(!stderr.contains("waiting for it"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(20), "{stderr}");
}
