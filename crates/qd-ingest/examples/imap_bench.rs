//! IMAP ingest benchmark against a private Dovecot, in one run:
//! (a) a plain `UID FETCH 1:* BODY.PEEK[]` by a minimal async-imap client (the ceiling),
//! (b) our `ingest_once` from the same Dovecot to stored tickets on SQLite: parse, thread,
//!     store (the pipeline without its optional steps),
//! (b2) the same with the live pipeline's steps, as `serve` runs it with `[ack]`
//!     configured: the filter judges each message before the store, acknowledgements are
//!     written to the outbox in the batch's transaction,
//! (b3) (b2) with live sender authentication (`filter.dns.enabled`): every message
//!     signed (Ed25519 DKIM) by its From domain and received by our border relay from an
//!     address the domain's SPF names; the records (key, SPF, DMARC per domain) served
//!     by a private dnsmasq on loopback,
//! (c) delivery-to-ticket latency with IDLE (p50/p99).
//!
//! It runs with the allocator the `quietdesk` binary ships with (mimalloc).
//!
//! cargo run --release -p qd-ingest --example imap_bench -- [MESSAGES] [LATENCY_SAMPLES]
//! (defaults 10000 and 200); `RUST_LOG=qd_store=debug` shows the store's phases.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmark harness")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use qd_core::{SystemClock, TicketRefFormat};
use qd_filter::{Authenticator, DnsSettings, Filter, FilterSettings};
use qd_ingest::ack::{AckConfig, AckSettings};
use qd_ingest::imap::{
    conn, ingest_once, run, AfterIngest, AfterStore, IngestContext, MailboxConfig, Secret, Tls,
};
use qd_ingest::steps::Steps;
use qd_ingest::ImportSettings;
use qd_store::Store;
use qd_testkit::Dovecot;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn mailbox(d: &Dovecot) -> MailboxConfig {
    let mut m = MailboxConfig::new(
        "bench",
        "127.0.0.1",
        "user",
        Secret::Password("pass".into()),
    );
    m.port = Some(d.port());
    m.tls = Tls::None;
    m.after = AfterIngest::Keep;
    m
}

fn ticket_ref() -> TicketRefFormat {
    TicketRefFormat::new("[#QD-{n}]").unwrap()
}

/// The filter with default settings and acknowledgements from the built-in templates;
/// with `dns`, sender authentication against that name server (our relays:
/// `desk.example`).
fn live_steps(store: &Store, dns: Option<&str>) -> Arc<dyn AfterStore> {
    let ack = AckConfig {
        from_name: Some("Support".into()),
        ..AckConfig::new("support@desk.example")
    };
    let mut settings = FilterSettings::default();
    let mut steps = Steps::new(store.clone(), Arc::new(SystemClock))
        .with_ack(AckSettings::from_config(&ack, ticket_ref(), "desk.example").unwrap());
    if let Some(server) = dns {
        settings.trusted_relays = vec!["desk.example".into()];
        settings.dns = DnsSettings {
            enabled: true,
            servers: vec![server.to_string()],
            ..DnsSettings::default()
        };
        let auth = Authenticator::new(&settings.dns).unwrap();
        steps = steps.with_authenticator(Arc::new(auth), Duration::from_secs(12));
    }
    let filter = Filter::new(settings).unwrap();
    Arc::new(steps.with_filter(Arc::new(filter)))
}

async fn context(dir: &std::path::Path, live: bool, dns: Option<&str>) -> IngestContext {
    let url = format!("sqlite://{}?mode=rwc", dir.join("q.db").display());
    let store = Store::connect(&url).await.unwrap();
    IngestContext {
        hook: live.then(|| live_steps(&store, dns)),
        store,
        settings: ImportSettings {
            max_message_bytes: 50 << 20,
            batch_size: 2000,
            ticket_ref: ticket_ref(),
            team: None,
            keep_full_ips: false,
        },
        clock: Arc::new(SystemClock),
    }
}

const SIGNED_FOLDER: &str = "Signed";

/// The From address of a synthetic message.
fn from_address(raw: &[u8]) -> String {
    let head = String::from_utf8_lossy(&raw[..raw.len().min(8192)]);
    let line = head
        .lines()
        .find(|l| l.len() > 5 && l[..5].eq_ignore_ascii_case("from:"))
        .unwrap_or_default();
    let addr = match (line.rfind('<'), line.rfind('>')) {
        (Some(a), Some(b)) if a < b => &line[a + 1..b],
        _ => line[5.min(line.len())..].trim(),
    };
    addr.to_ascii_lowercase()
}

/// Signs every message with a key of its From domain and delivers it to
/// [`SIGNED_FOLDER`] as our border relay `mx.desk.example` would, from 192.0.2.10;
/// serves each domain's key, SPF (`ip4:192.0.2.10 -all`) and DMARC (`p=reject`) from a
/// private dnsmasq. Returns the server and the Message-IDs (no brackets).
fn deliver_signed(
    d: &Dovecot,
    msgs: &[qd_synth::SynthMessage],
) -> (qd_testkit::Dnsmasq, Vec<String>) {
    let started = Instant::now();
    let mut domains: std::collections::HashMap<String, qd_testkit::SigningDomain> =
        std::collections::HashMap::new();
    let date = chrono::Utc::now().to_rfc2822();
    let mut ids = Vec::with_capacity(msgs.len());
    for m in msgs {
        let from = from_address(&m.raw);
        let domain = from.rsplit_once('@').map_or("", |(_, d)| d).to_string();
        let signer = domains
            .entry(domain.clone())
            .or_insert_with(|| qd_testkit::SigningDomain::new(&domain, "qd").unwrap());
        let signed = signer.sign(&String::from_utf8_lossy(&m.raw)).unwrap();
        let delivered = format!(
            "Return-Path: <{from}>\r\nReceived: from mail.{domain} (mail.{domain} [192.0.2.10])\r\n\tby mx.desk.example with ESMTPS id b3; {date}\r\n{signed}"
        );
        d.deliver("user", SIGNED_FOLDER, delivered.as_bytes())
            .unwrap();
        ids.push(
            m.message_id
                .trim_matches(|c| c == '<' || c == '>')
                .to_string(),
        );
    }
    let records: Vec<_> = domains
        .values()
        .flat_map(|s| s.records("192.0.2.10", "reject").unwrap())
        .collect();
    let dns = qd_testkit::Dnsmasq::start(&records).unwrap();
    println!(
        "signed and delivered {} messages from {} domains in {:.1} s",
        msgs.len(),
        domains.len(),
        started.elapsed().as_secs_f64()
    );
    (dns, ids)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let samples: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);

    let d = Dovecot::start_plain().expect("dovecot (apt-get install dovecot-imapd)");
    let started = Instant::now();
    let msgs: Vec<_> = qd_synth::generate(&qd_synth::SynthConfig::new(42, n)).collect();
    let bytes: usize = msgs.iter().map(|m| m.raw.len()).sum();
    for m in &msgs {
        d.deliver("user", "INBOX", &m.raw).unwrap();
    }
    println!(
        "delivered {n} messages ({:.1} MiB) in {:.1} s",
        bytes as f64 / 1048576.0,
        started.elapsed().as_secs_f64()
    );
    let m = mailbox(&d);

    // Dovecot builds its index on the first SELECT; do that outside both timings.
    {
        let mut c = conn::connect(&m, Duration::from_secs(60)).await.unwrap();
        c.session.select("INBOX").await.unwrap();
        c.session.logout().await.unwrap();
    }

    // (a) The ceiling: a minimal client that only fetches.
    let t = Instant::now();
    let mut c = conn::connect(&m, Duration::from_secs(60)).await.unwrap();
    c.session.select("INBOX").await.unwrap();
    let mut fetched = 0u64;
    let mut fetched_bytes = 0usize;
    {
        let mut stream = c.session.uid_fetch("1:*", "BODY.PEEK[]").await.unwrap();
        while let Some(f) = stream.next().await {
            let f = f.unwrap();
            fetched_bytes += f.body().map_or(0, <[u8]>::len);
            fetched += 1;
        }
    }
    c.session.logout().await.unwrap();
    let raw_secs = t.elapsed().as_secs_f64();
    let raw_rate = fetched as f64 / raw_secs;
    println!(
        "(a) plain UID FETCH 1:* BODY.PEEK[]: {fetched} messages, {:.1} MiB in {raw_secs:.2} s = {raw_rate:.0} msg/s",
        fetched_bytes as f64 / 1048576.0
    );

    // (b) Ours, Dovecot to stored tickets; (b2) the same with the filter and acks.
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), false, None).await;
    let s = ingest_once(&ctx, std::slice::from_ref(&m)).await.unwrap();
    assert_eq!(s.stored, n, "{s:?}");
    println!(
        "(b) quietdesk ingest --once: fetched {}, stored {}, {} tickets in {:.2} s = {:.0} msg/s ({:.0}% of (a))",
        s.fetched,
        s.stored,
        s.tickets,
        s.seconds,
        s.messages_per_sec,
        100.0 * s.messages_per_sec / raw_rate
    );
    let live_dir = tempfile::tempdir().unwrap();
    let live = context(live_dir.path(), true, None).await;
    let s2 = ingest_once(&live, std::slice::from_ref(&m)).await.unwrap();
    assert_eq!(s2.fetched, n, "{s2:?}");
    let stats = live.store.stats().await.unwrap();
    println!(
        "(b2) with filter and acknowledgements: fetched {}, stored {} ({} quarantined), {} tickets in {:.2} s = {:.0} msg/s ({:.0}% of (a))",
        s2.fetched,
        s2.stored,
        stats.quarantined_messages,
        s2.tickets,
        s2.seconds,
        s2.messages_per_sec,
        100.0 * s2.messages_per_sec / raw_rate
    );

    // (b3) (b2) with live sender authentication.
    let (dns, signed) = deliver_signed(&d, &msgs);
    let mut sm = m.clone();
    sm.folders = vec![SIGNED_FOLDER.to_string()];
    {
        let mut c = conn::connect(&sm, Duration::from_secs(60)).await.unwrap();
        c.session.select(SIGNED_FOLDER).await.unwrap();
        c.session.logout().await.unwrap();
    }
    let auth_dir = tempfile::tempdir().unwrap();
    let authed = context(auth_dir.path(), true, Some(&dns.address())).await;
    let s3 = ingest_once(&authed, std::slice::from_ref(&sm))
        .await
        .unwrap();
    assert_eq!(s3.fetched, n, "{s3:?}");
    // What the checks found, on a sample.
    let mut passed = [0usize; 3];
    let sample = &signed[..signed.len().min(200)];
    for id in sample {
        let Some(ticket) = authed.store.ticket_of_message_id(id).await.unwrap() else {
            continue;
        };
        let msgs = authed.store.ticket_messages(ticket).await.unwrap();
        let Some(tags) = msgs
            .iter()
            .find(|x| x.message_id.as_deref() == Some(id.as_str()))
            .and_then(|x| x.verdict_tags.clone())
        else {
            continue;
        };
        for (i, tag) in ["AUTH_SPF_PASS", "AUTH_DKIM_PASS", "AUTH_DMARC_PASS"]
            .iter()
            .enumerate()
        {
            passed[i] += usize::from(tags.contains(tag));
        }
    }
    println!(
        "(b3) with live SPF/DKIM/DMARC over DNS: fetched {}, stored {} in {:.2} s = {:.0} msg/s ({:.0}% of (a)); of {} sampled: SPF pass {}, DKIM pass {}, DMARC pass {}",
        s3.fetched,
        s3.stored,
        s3.seconds,
        s3.messages_per_sec,
        100.0 * s3.messages_per_sec / raw_rate,
        sample.len(),
        passed[0],
        passed[1],
        passed[2]
    );
    drop(dns);

    // (c) Latency with IDLE: one message at a time, from delivery to the stored row.
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(run(ctx.clone(), vec![m.clone()], shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let extra: Vec<_> = qd_synth::generate(&qd_synth::SynthConfig::new(4242, samples)).collect();
    let mut lat = Vec::with_capacity(extra.len());
    for msg in &extra {
        let id = msg
            .message_id
            .trim_matches(|c| c == '<' || c == '>')
            .to_string();
        let t = Instant::now();
        d.deliver("user", "INBOX", &msg.raw).unwrap();
        loop {
            if ctx.store.ticket_of_message_id(&id).await.unwrap().is_some() {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "message never stored"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        lat.push(t.elapsed());
        // The watcher goes back to IDLE between deliveries, as with real traffic.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    task.await.unwrap().unwrap();
    lat.sort();
    println!(
        "(c) delivery-to-ticket with IDLE over {} messages: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        lat.len(),
        percentile(&lat, 0.50).as_secs_f64() * 1000.0,
        percentile(&lat, 0.99).as_secs_f64() * 1000.0,
        lat.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    );
}
