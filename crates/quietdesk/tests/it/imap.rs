//! `quietdesk ingest` and `serve` against a private Dovecot: the one-shot summary, a clear
//! error for a wrong password, SIGKILL at random points of a 2,000-message ingest, and the
//! ingester inside `serve`, also while its PostgreSQL database drops every connection.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use qd_testkit::Dovecot;
use rand::{Rng, SeedableRng};

use crate::{kill_and_reap, KillOnDrop, Qd};

fn synth(seed: u64, n: u64) -> Vec<qd_synth::SynthMessage> {
    qd_synth::generate(&qd_synth::SynthConfig::new(seed, n)).collect()
}

/// A config file with one mailbox on the test server; the password comes from
/// QD_TEST_IMAP_PW.
fn write_config(dir: &Path, d: &Dovecot, batch_size: usize) -> std::path::PathBuf {
    let path = dir.join("quietdesk.toml");
    std::fs::write(
        &path,
        format!(
            "[ingest]\n\
             [[ingest.mailboxes]]\n\
             name = \"support\"\n\
             host = \"127.0.0.1\"\n\
             port = {port}\n\
             tls = \"none\"\n\
             user = \"user\"\n\
             secret = {{ env = \"QD_TEST_IMAP_PW\" }}\n\
             folders = [\"INBOX\"]\n\
             batch_size = {batch_size}\n\
             stall_timeout_secs = 10\n",
            port = d.port()
        ),
    )
    .unwrap();
    path
}

/// `quietdesk serve` with `config` on a free loopback port, killed if the test fails.
fn spawn_serve(qd: &Qd, config: &Path) -> KillOnDrop {
    spawn_serve_logging_to(qd, config, Stdio::null())
}

/// [`spawn_serve`] with its log (warnings and errors) going to `log`.
fn spawn_serve_logging_to(qd: &Qd, config: &Path, log: impl Into<Stdio>) -> KillOnDrop {
    let port = qd_testkit::free_port();
    KillOnDrop(
        qd.command(&["--config", config.to_str().unwrap(), "serve"])
            .env("QD_TEST_IMAP_PW", "pass")
            .env("QUIETDESK__HTTP__LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

/// The store `qd` writes to: its SQLite file, or its private PostgreSQL database.
/// [`open_store`] with the data dir's master key, so sealed raw mail opens.
pub async fn open_sealed_store(qd: &Qd) -> qd_store::Store {
    let hex = std::fs::read_to_string(qd.data_dir().join("master.key")).unwrap();
    open_store(qd)
        .await
        .with_master_key(qd_store::MasterKey::parse_hex(hex.trim()).unwrap())
}

pub async fn open_store(qd: &Qd) -> qd_store::Store {
    let url = match &qd._pg {
        Some(pg) => pg.url().to_string(),
        None => format!(
            "sqlite://{}?mode=rwc",
            qd.data_dir().join("quietdesk.db").display()
        ),
    };
    qd_store::Store::connect(&url).await.unwrap()
}

async fn assert_exactly_once(qd: &Qd, msgs: &[qd_synth::SynthMessage]) {
    let store = open_store(qd).await;
    let stats = store.stats().await.unwrap();
    if stats.messages != msgs.len() as u64 {
        // Say whether the difference is mail we delivered or rows beside it, and keep
        // the data for a look (a rare CI failure stored 2,550 of 2,000 once).
        let mut found = 0;
        for m in msgs {
            let id = m.message_id.trim_matches(|c| c == '<' || c == '>');
            found += usize::from(store.ticket_of_message_id(id).await.unwrap().is_some());
        }
        let keep = std::env::temp_dir().join(format!("qd-failed-{}", std::process::id()));
        let copied = std::process::Command::new("cp")
            .arg("-r")
            .arg(qd.dir.path())
            .arg(&keep)
            .status()
            .is_ok_and(|s| s.success());
        eprintln!(
            "{} rows stored, {found} of the {} delivered Message-IDs found; data copied to {} ({copied})",
            stats.messages,
            msgs.len(),
            keep.display()
        );
    }
    assert_eq!(stats.messages, msgs.len() as u64, "messages in the store");
    for m in msgs {
        let id = m.message_id.trim_matches(|c| c == '<' || c == '>');
        assert!(
            store.ticket_of_message_id(id).await.unwrap().is_some(),
            "{id} missing"
        );
    }
    // Stored means readable: every message's raw mail opens with the data dir's master
    // key (a retried batch once sealed mail with a key whose row its failure had undone).
    let sealed = open_sealed_store(qd).await;
    let ids = store
        .message_ids_after(0, msgs.len() as u64 + 1)
        .await
        .unwrap();
    assert_eq!(ids.len(), msgs.len());
    for id in ids {
        let raw = sealed.raw_message(id).await;
        assert!(
            matches!(raw, Ok(Some(_))),
            "the raw mail of message {id} does not open: {raw:?}"
        );
    }
    store.close().await.unwrap();
}

/// `quietdesk ingest --once --mailbox imap://user@…/INBOX --json` against `d`; its summary.
pub fn ingest_once(qd: &Qd, d: &Dovecot) -> serde_json::Value {
    let url = format!("imap://user@127.0.0.1:{}/INBOX", d.port());
    qd.json_with(
        &["ingest", "--once", "--mailbox", &url, "--json"],
        &[("QUIETDESK_IMAP_PASSWORD", "pass")],
    )
}

#[test]
fn ingest_once_with_a_mailbox_url_prints_a_summary() {
    let d = Dovecot::start_plain().unwrap();
    let msgs = synth(21, 40);
    for m in &msgs {
        d.deliver("user", "INBOX", &m.raw).unwrap();
    }
    let qd = Qd::sqlite();
    let run = || ingest_once(&qd, &d);
    let v = run();
    assert_eq!(v["fetched"], 40, "{v}");
    assert_eq!(v["stored"], 40);
    assert_eq!(v["duplicates"], 0);
    assert_eq!(v["failed"], 0);
    assert_eq!(d.count("user", "quietdesk/processed"), 40);
    let v = run();
    assert_eq!(v["fetched"], 0, "{v}");

    let s = qd.json(&["stats", "--json"]);
    assert_eq!(s["messages"], 40);
}

#[test]
fn ingest_with_a_wrong_password_fails_clearly() {
    let d = Dovecot::start_plain().unwrap();
    let qd = Qd::sqlite();
    let url = format!("imap://user@127.0.0.1:{}/INBOX", d.port());
    let out = qd
        .command(&["ingest", "--once", "--mailbox", &url])
        .env("QUIETDESK_IMAP_PASSWORD", "not-the-password")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("authentication failed for user user"), "{err}");
    assert!(!err.contains("not-the-password"), "the secret never prints");

    let out = qd
        .command(&["ingest", "--once", "--mailbox", &url])
        .env_remove("QUIETDESK_IMAP_PASSWORD")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("QUIETDESK_IMAP_PASSWORD"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_of_a_2000_message_ingest_stores_each_once() {
    let d = Dovecot::start_plain().unwrap();
    let msgs = synth(22, 2000);
    for m in &msgs {
        d.deliver("user", "INBOX", &m.raw).unwrap();
    }
    let qd = Qd::sqlite();
    let config = write_config(qd.dir.path(), &d, 25);
    let seed: u64 = rand::thread_rng().gen();
    eprintln!("kill schedule seed {seed}");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let config_arg = config.to_str().unwrap().to_string();
    let mut kills = 0;
    for _ in 0..8 {
        let mut child = qd
            .command(&["--config", &config_arg, "ingest"])
            .env("QD_TEST_IMAP_PW", "pass")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.gen_range(150..1200)));
        let status = kill_and_reap(&mut child, "-KILL");
        assert!(!status.success());
        kills += 1;
        if d.count("user", "INBOX") == 0 {
            break;
        }
    }
    assert!(kills >= 1);
    let last = qd.json_with(
        &["--config", &config_arg, "ingest", "--once", "--json"],
        &[("QD_TEST_IMAP_PW", "pass")],
    );
    eprintln!("after {kills} kills, the last run: {last}");
    assert_exactly_once(&qd, &msgs).await;
    assert_eq!(
        d.count("user", "INBOX"),
        0,
        "everything moved after the restarts"
    );
    assert_eq!(d.count("user", "quietdesk/processed"), 2000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_ingests_pushed_mail_and_stops_on_sigterm() {
    let d = Dovecot::start_plain().unwrap();
    let msgs = synth(23, 3);
    d.deliver("user", "INBOX", &msgs[0].raw).unwrap();
    let qd = Qd::sqlite();
    let config = write_config(qd.dir.path(), &d, 100);
    let mut child = spawn_serve(&qd, &config);
    let store_count = |qd: &Qd| {
        let qd_dir = qd.data_dir();
        async move {
            if !qd_dir.join("quietdesk.db").exists() {
                return 0;
            }
            let url = format!(
                "sqlite://{}?mode=rwc",
                qd_dir.join("quietdesk.db").display()
            );
            let store = qd_store::Store::connect(&url).await.unwrap();
            let n = store.stats().await.unwrap().messages;
            n
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while store_count(&qd).await < 1 {
        if let Some(s) = child.0.try_wait().unwrap() {
            panic!("serve exited early with {s}");
        }
        assert!(
            Instant::now() < deadline,
            "serve never ingested the first message"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for m in &msgs[1..] {
        tokio::time::sleep(Duration::from_millis(300)).await;
        d.deliver("user", "INBOX", &m.raw).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while store_count(&qd).await < 3 {
        assert!(
            Instant::now() < deadline,
            "pushed mail not ingested by serve"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = kill_and_reap(&mut child.0, "-TERM");
    assert!(status.success(), "serve exited with {status}");
    assert_exactly_once(&qd, &msgs).await;
}

/// The database goes away under a running `serve`: PostgreSQL terminates every connection
/// (what a restart or a failover does to its clients) again and again, first while a
/// backlog is being ingested, then while new mail is pushed. Nothing is lost, nothing is
/// stored twice, and `serve` carries on by itself and still stops cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_rides_out_a_database_that_drops_its_connections() {
    let d = Dovecot::start_plain().unwrap();
    let msgs = synth(29, 400);
    let (backlog, pushed) = msgs.split_at(250);
    for m in backlog {
        d.deliver("user", "INBOX", &m.raw).unwrap();
    }
    let qd = Qd::postgres().await;
    let pg = qd._pg.as_ref().unwrap();
    let config = write_config(qd.dir.path(), &d, 10);
    let log_path = qd.dir.path().join("serve.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = spawn_serve_logging_to(&qd, &config, log);
    let stored = || async {
        let store = open_store(&qd).await;
        let n = store.stats().await.unwrap().messages;
        store.close().await.unwrap();
        n
    };
    let alive = |child: &mut KillOnDrop| {
        if let Some(s) = child.0.try_wait().unwrap() {
            panic!("serve exited with {s}");
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while stored().await == 0 {
        alive(&mut child);
        assert!(Instant::now() < deadline, "serve never stored a message");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The backlog is being stored batch after batch: cut often enough that some cuts
    // land inside a batch's transaction, not only on idle pooled connections.
    let mut cuts = 0;
    while cuts < 40 && stored().await < backlog.len() as u64 {
        pg.cut_connections().await.unwrap();
        cuts += 1;
        tokio::time::sleep(Duration::from_millis(25)).await;
        alive(&mut child);
    }
    // New mail arrives (IDLE pushes it) between outages.
    for (round, chunk) in pushed.chunks(30).enumerate() {
        pg.cut_connections().await.unwrap();
        for m in chunk {
            d.deliver("user", "INBOX", &m.raw).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(150 + 50 * round as u64)).await;
        alive(&mut child);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while stored().await < msgs.len() as u64 {
        alive(&mut child);
        assert!(
            Instant::now() < deadline,
            "serve did not catch up after the outages: {} of {} stored",
            stored().await,
            msgs.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = kill_and_reap(&mut child.0, "-TERM");
    assert!(status.success(), "serve exited with {status}");
    let log = std::fs::read_to_string(&log_path).unwrap();
    let interrupted = log.matches("IMAP ingest interrupted").count();
    assert!(
        interrupted >= 1,
        "no cut reached the ingest inside a batch ({cuts} cuts during the backlog); log:\n{log}"
    );
    eprintln!("{cuts} cuts during the backlog, {interrupted} interrupted a batch");
    assert_exactly_once(&qd, &msgs).await;
    assert_eq!(d.count("user", "INBOX"), 0);
    assert_eq!(d.count("user", "quietdesk/processed"), msgs.len());
}

/// A customer's mail as a real client sends it: a trace, a Message-ID, a fresh Date.
fn customer_mail(from: &str, id: &str, subject: &str, extra: &str, body: &str) -> Vec<u8> {
    let date = chrono::Utc::now().to_rfc2822();
    format!(
        "Received: from mail.customer.example (mail.customer.example [198.51.100.20])\r\n\
         \tby mx.quietdesk.example with ESMTPS id 4AbC; {date}\r\n\
         From: Customer <{from}>\r\nTo: support@quietdesk.example\r\n\
         Subject: {subject}\r\nMessage-ID: <{id}>\r\nDate: {date}\r\n\
         MIME-Version: 1.0\r\n{extra}{body}"
    )
    .into_bytes()
}

/// The live pipeline inside `serve`: parse -> filter -> thread -> store -> acknowledge,
/// and the outbox worker sending the acknowledgement over real SMTP. An auto-reply gets
/// no answer (RFC 3834); a message with a virus is quarantined with its attachment and
/// gets no answer either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_filters_acknowledges_and_sends() {
    let d = Dovecot::start_plain().unwrap();
    let sink = qd_testkit::SmtpSink::start().unwrap();
    let plain = "Content-Type: text/plain; charset=utf-8\r\n\r\n";
    d.deliver(
        "user",
        "INBOX",
        &customer_mail(
            "ann@customer.example",
            "ask-1@customer.example",
            "Backup restore failed",
            plain,
            "Hello, the restore of last night's backup failed.\r\n",
        ),
    )
    .unwrap();
    d.deliver(
        "user",
        "INBOX",
        &customer_mail(
            "away@customer.example",
            "away-1@customer.example",
            "Out of office",
            &format!("Auto-Submitted: auto-replied\r\n{plain}"),
            "I am away until Monday.\r\n",
        ),
    )
    .unwrap();
    let eicar = qd_filter::signatures::eicar();
    let virus_body = format!(
        "--b\r\nContent-Type: text/plain\r\n\r\nSee the attached invoice.\r\n--b\r\n\
         Content-Type: application/octet-stream; name=\"invoice.com\"\r\n\
         Content-Disposition: attachment; filename=\"invoice.com\"\r\n\r\n{}\r\n--b--\r\n",
        String::from_utf8_lossy(&eicar)
    );
    d.deliver(
        "user",
        "INBOX",
        &customer_mail(
            "bob@customer.example",
            "virus-1@customer.example",
            "Invoice",
            "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n",
            &virus_body,
        ),
    )
    .unwrap();

    let qd = Qd::sqlite();
    let config = write_config(qd.dir.path(), &d, 100);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text = format!(
        "[ack]\nfrom = \"support@quietdesk.example\"\nfrom_name = \"Quietdesk Support\"\n\n\
         [smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\
         from = \"support@quietdesk.example\"\nour_domain = \"quietdesk.example\"\npoll_secs = 1\n\n{text}",
        sink.port()
    );
    std::fs::write(&config, text).unwrap();
    let mut child = spawn_serve(&qd, &config);
    let got = sink.wait_for(1, Duration::from_secs(60));
    assert_eq!(got.len(), 1, "one acknowledgement expected");
    // Give a wrongly queued second acknowledgement the time to arrive too.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = kill_and_reap(&mut child.0, "-TERM");
    assert!(status.success(), "serve exited with {status}");

    let all = sink.messages();
    assert_eq!(all.len(), 1, "only Ann is acknowledged");
    let ack = &all[0];
    assert_eq!(ack.rcpt_to, vec!["ann@customer.example".to_string()]);
    assert_eq!(ack.mail_from, "", "RFC 3834: null reverse-path");
    let raw = String::from_utf8_lossy(&ack.raw);
    assert!(raw.contains("Auto-Submitted: auto-replied"), "{raw}");
    assert!(
        raw.contains("In-Reply-To: <ask-1@customer.example>"),
        "{raw}"
    );
    assert!(raw.contains("[#QD-"), "{raw}");

    let store = open_store(&qd).await;
    let verdict_of = |id: &'static str| {
        let store = store.clone();
        async move {
            let ticket = store.ticket_of_message_id(id).await.unwrap().unwrap();
            let msgs = store.ticket_messages(ticket).await.unwrap();
            let m = msgs
                .into_iter()
                .find(|m| m.message_id.as_deref() == Some(id))
                .unwrap();
            let attachments = store.attachments_of(&[m.id]).await.unwrap();
            (m, attachments)
        }
    };
    let (ann, _) = verdict_of("ask-1@customer.example").await;
    assert_eq!(
        ann.verdict_class.as_deref(),
        Some("ham"),
        "{:?}",
        ann.verdict_tags
    );
    assert!(!ann.quarantined);
    let (bob, attachments) = verdict_of("virus-1@customer.example").await;
    assert_eq!(bob.verdict_class.as_deref(), Some("virus"));
    assert!(bob.quarantined);
    assert!(bob
        .verdict_tags
        .as_deref()
        .unwrap()
        .contains("VIRUS_SIGNATURE"));
    assert_eq!(attachments.len(), 1);
    assert!(
        attachments[0].quarantined,
        "the infected attachment is quarantined"
    );
    // The acknowledgement is recorded on Ann's ticket as outgoing mail.
    let ticket = store
        .ticket_of_message_id("ask-1@customer.example")
        .await
        .unwrap()
        .unwrap();
    let thread = store.ticket_messages(ticket).await.unwrap();
    assert_eq!(thread.len(), 2, "the sent acknowledgement joins the ticket");
    assert_eq!(thread[1].direction, "out");
    store.close().await.unwrap();
}

/// Sender authentication over DNS in the live path (`filter.dns.enabled`, records served
/// by a private dnsmasq): a signed message from a host its domain's SPF names passes
/// SPF, DKIM and DMARC; the same mail altered and sent from elsewhere fails all three,
/// and the domain's `p=reject` makes it spam (quarantined). `filter check` agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_authenticates_senders_against_dns() {
    let domain = qd_testkit::SigningDomain::new("example.com", "s1").unwrap();
    let dns = qd_testkit::Dnsmasq::start(&domain.records("192.0.2.10", "reject").unwrap()).unwrap();
    let d = Dovecot::start_plain().unwrap();
    let date = chrono::Utc::now().to_rfc2822();
    let mail = |id: &str, subject: &str| {
        format!(
            "From: Alice <alice@example.com>\r\nTo: support@quietdesk.example\r\n\
             Subject: {subject}\r\nDate: {date}\r\nMessage-ID: <{id}>\r\n\
             MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nWhere is my order?\r\n"
        )
    };
    // What our border relay and the delivery agent write above the signed message.
    let delivered = |client_ip: &str, signed: &str| {
        format!(
            "Return-Path: <alice@example.com>\r\nReceived: from mail.example.com \
             (mail.example.com [{client_ip}])\r\n\tby mx.quietdesk.example with ESMTPS id 9; \
             {date}\r\n{signed}"
        )
    };
    let genuine = delivered(
        "192.0.2.10",
        &domain
            .sign(&mail("genuine@example.com", "Order 42"))
            .unwrap(),
    );
    d.deliver("user", "INBOX", genuine.as_bytes()).unwrap();
    let forged = domain
        .sign(&mail("forged@example.com", "Order 43"))
        .unwrap()
        .replace("Order 43", "Pay this invoice");
    d.deliver(
        "user",
        "INBOX",
        delivered("198.51.100.7", &forged).as_bytes(),
    )
    .unwrap();

    let qd = Qd::sqlite();
    let config = qd.dir.path().join("quietdesk.toml");
    std::fs::write(
        &config,
        format!(
            "[ingest]\nfilter = true\n\n[filter]\ntrusted_relays = [\"quietdesk.example\"]\n\
             our_domains = [\"quietdesk.example\"]\n\n[filter.dns]\nenabled = true\n\
             servers = [\"{}\"]\ntimeout_ms = 2000\n",
            dns.address()
        ),
    )
    .unwrap();
    let url = format!("imap://user@127.0.0.1:{}/INBOX", d.port());
    let summary = qd.json_with(
        &[
            "--config",
            config.to_str().unwrap(),
            "ingest",
            "--once",
            "--mailbox",
            &url,
            "--json",
        ],
        &[("QUIETDESK_IMAP_PASSWORD", "pass")],
    );
    assert_eq!(summary["stored"], 2, "{summary}");

    let store = open_store(&qd).await;
    let message = |id: &'static str| {
        let store = store.clone();
        async move {
            let ticket = store.ticket_of_message_id(id).await.unwrap().unwrap();
            store
                .ticket_messages(ticket)
                .await
                .unwrap()
                .into_iter()
                .find(|m| m.message_id.as_deref() == Some(id))
                .unwrap()
        }
    };
    let ok = message("genuine@example.com").await;
    let tags = ok.verdict_tags.clone().unwrap_or_default();
    for tag in ["AUTH_SPF_PASS", "AUTH_DKIM_PASS", "AUTH_DMARC_PASS"] {
        assert!(tags.contains(tag), "{tag} missing: {tags}");
    }
    assert_eq!(ok.verdict_class.as_deref(), Some("ham"), "{tags}");
    assert!(!ok.quarantined);

    let bad = message("forged@example.com").await;
    let tags = bad.verdict_tags.clone().unwrap_or_default();
    for tag in [
        "AUTH_SPF_FAIL",
        "AUTH_DKIM_FAIL",
        "AUTH_DMARC_FAIL_ENFORCED",
    ] {
        assert!(tags.contains(tag), "{tag} missing: {tags}");
    }
    assert_eq!(bad.verdict_class.as_deref(), Some("spam"), "{tags}");
    assert!(bad.quarantined);
    store.close().await.unwrap();

    // `filter check` on a file checks the same way.
    let eml = qd.dir.path().join("genuine.eml");
    std::fs::write(&eml, &genuine).unwrap();
    let verdict = qd.json(&[
        "--config",
        config.to_str().unwrap(),
        "filter",
        "check",
        eml.to_str().unwrap(),
        "--json",
    ]);
    let names: Vec<&str> = verdict["tags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for tag in ["AUTH_SPF_PASS", "AUTH_DKIM_PASS", "AUTH_DMARC_PASS"] {
        assert!(names.contains(&tag), "{tag} missing: {verdict}");
    }
}
