//! IMAP ingest benchmark against a private Dovecot, in one run:
//! (a) a plain `UID FETCH 1:* BODY.PEEK[]` by a minimal async-imap client (the ceiling),
//! (b) our `ingest_once` from the same Dovecot to stored tickets on SQLite: parse, thread,
//!     store (the pipeline without its optional steps),
//! (b2) the same with the live pipeline's steps, as `serve` runs it with `[ack]`
//!     configured: the filter judges each message before the store, acknowledgements are
//!     written to the outbox in the batch's transaction,
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
use qd_filter::{Filter, FilterSettings};
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

/// The filter with default settings and acknowledgements from the built-in templates.
fn live_steps(store: &Store) -> Arc<dyn AfterStore> {
    let ack = AckConfig {
        enabled: true,
        from: "support@desk.example".into(),
        from_name: Some("Support".into()),
        own_addresses: Vec::new(),
        max_per_sender_per_day: 3,
        only_new_tickets: true,
        templates_dir: None,
        default_language: "en".into(),
        null_envelope_sender: true,
    };
    let filter = Filter::new(FilterSettings::default()).unwrap();
    Arc::new(
        Steps::new(store.clone(), Arc::new(SystemClock))
            .with_filter(Arc::new(filter))
            .with_ack(AckSettings::from_config(&ack, ticket_ref(), "desk.example").unwrap()),
    )
}

async fn context(dir: &std::path::Path, live: bool) -> IngestContext {
    let url = format!("sqlite://{}?mode=rwc", dir.join("q.db").display());
    let store = Store::connect(&url).await.unwrap();
    IngestContext {
        hook: live.then(|| live_steps(&store)),
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
    let ctx = context(dir.path(), false).await;
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
    let live = context(live_dir.path(), true).await;
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
