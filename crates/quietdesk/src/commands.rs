//! One function per subcommand, plus the wiring they share.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use qd_core::SystemClock;
use qd_search::sync::{Indexer, SyncError};
use qd_search::{Query, SearchIndex};
use qd_store::Store;
use tracing::{info, warn};

use crate::cli::{Cli, Command, ImportArgs, SearchArgs};
use crate::config::{self, Settings};

/// Exit code for a query or argument the user must fix (as opposed to a failure).
const EXIT_USAGE: u8 = 2;

pub async fn run(cli: Cli, env: Vec<(String, String)>) -> Result<ExitCode> {
    let raw = config::load(cli.global.config.as_deref(), &env)?;
    let mut settings = raw.validate(cli.global.data_dir.as_deref())?;
    settings.master_key_hex = env
        .iter()
        .find(|(k, _)| k == "QUIETDESK_MASTER_KEY")
        .map(|(_, v)| v.clone());
    if let Some(smtp) = settings.smtp.as_mut() {
        if let Some((_, v)) = env.iter().find(|(k, _)| k == "QUIETDESK_SMTP_PASSWORD") {
            smtp.password = Some(v.clone());
        }
    }
    settings.actor = cli
        .global
        .actor
        .clone()
        .filter(|a| !a.trim().is_empty())
        .or_else(|| (!settings.cli_actor.trim().is_empty()).then(|| settings.cli_actor.clone()))
        .or_else(|| {
            env.iter()
                .find(|(k, _)| k == "USER" || k == "LOGNAME")
                .map(|(_, v)| v.clone())
        })
        .unwrap_or_else(|| "unknown".to_string());
    init_logging(&settings, &env);
    match cli.command {
        Command::Serve => serve(&settings, &env).await,
        Command::Migrate => {
            let store = open_store(&settings).await?;
            // Stored mail from before `blob_mentions` is read once, here (or else by the
            // first erasure).
            match store.record_mentions().await {
                Ok(0) => {}
                Ok(read) => out!("recorded the mentions of {read} stored messages"),
                // The schema is up to date all the same; the first erasure (which has
                // the key) does the reading.
                Err(qd_store::Error::NoMasterKey) => tracing::warn!(
                    "stored mail from before migration 10 is sealed and no master key is configured: its mentions are recorded by the first erasure"
                ),
                Err(e) => return Err(e.into()),
            }
            store.close().await?;
            out!("database schema is up to date");
            Ok(ExitCode::SUCCESS)
        }
        Command::Import(args) => import(&settings, &args).await,
        Command::Search(args) => search(&settings, &args).await,
        Command::Reindex => reindex(&settings).await,
        Command::Ingest(args) => crate::ingest_cmd::ingest(&settings, &args, &env).await,
        Command::Customer(cmd) => crate::privacy_cmd::customer(&settings, cmd, &env).await,
        Command::Ticket(cmd) => crate::privacy_cmd::ticket(&settings, cmd, &env).await,
        Command::Filter(cmd) => crate::filter_cmd::run(&settings, cmd).await,
        Command::Quarantine(cmd) => crate::learn_cmd::quarantine(&settings, cmd).await,
        Command::Retention(cmd) => crate::privacy_cmd::retention(&settings, cmd).await,
        Command::Stats(flag) => stats(&settings, flag.json).await,
        Command::Compact(flag) => compact(&settings, flag.json).await,
        Command::Keys(cmd) => crate::keys_cmd::run(&settings, cmd).await,
        Command::Bench(cmd) => crate::bench::run(&settings, cmd).await,
    }
}

/// `compact`: the database rewritten without what was deleted (see `Store::compact`).
async fn compact(settings: &Settings, json: bool) -> Result<ExitCode> {
    let store = open_store(settings).await?;
    let started = std::time::Instant::now();
    let before = store.database_bytes().await?;
    store.compact().await?;
    let after = store.database_bytes().await?;
    let seconds = started.elapsed().as_secs_f64();
    store.close().await?;
    if json {
        out!(
            "{}",
            serde_json::json!({"bytes_before": before, "bytes_after": after, "seconds": seconds})
        );
    } else {
        out!("database compacted: {before} bytes before, {after} after, in {seconds:.1} s");
    }
    Ok(ExitCode::SUCCESS)
}

fn init_logging(settings: &Settings, env: &[(String, String)]) {
    let filter = env
        .iter()
        .find(|(k, _)| k == "RUST_LOG")
        .map(|(_, v)| v.clone())
        // sqlx logs whole statements (with message text) at info: never let it, whatever
        // the configured level says; RUST_LOG can still ask for it when debugging.
        .unwrap_or_else(|| format!("{},sea_orm_migration=warn,sqlx=warn", settings.log_level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .try_init();
}

pub async fn open_store(settings: &Settings) -> Result<Store> {
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("creating data dir {}", settings.data_dir.display()))?;
    let store = Store::connect(&settings.database_url).await?;
    let key = master_key(settings, &store).await?;
    Ok(store.with_master_key(key))
}

/// The master key: `QUIETDESK_MASTER_KEY`, else the configured file, else
/// `<data_dir>/master.key` — created (mode 0600) only while no sealed key exists, so a
/// lost key file is an error instead of a silent new key that cannot open old mail.
async fn master_key(settings: &Settings, store: &Store) -> Result<qd_store::MasterKey> {
    let path = match crate::keys_cmd::KeySource::of(settings) {
        crate::keys_cmd::KeySource::Env => {
            let hex = settings.master_key_hex.as_deref().unwrap_or_default();
            return qd_store::MasterKey::parse_hex(hex).context("QUIETDESK_MASTER_KEY");
        }
        crate::keys_cmd::KeySource::File(path) => path,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let key = qd_store::MasterKey::parse_hex(&text)
                .with_context(|| format!("master key file {}", path.display()))?;
            crate::keys_cmd::finish_interrupted_rotation(store, &path, key).await
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if store.sealed_key_count().await? > 0 {
                anyhow::bail!(
                    "the master key file {} is missing, but the store holds sealed keys: \
                     restore the file or set QUIETDESK_MASTER_KEY",
                    path.display()
                );
            }
            let key = qd_store::MasterKey::generate();
            write_secret(&path, key.to_hex().as_bytes())
                .with_context(|| format!("creating master key file {}", path.display()))?;
            info!(path = %path.display(), "created a new master key");
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("reading master key file {}", path.display())),
    }
}

pub fn write_secret(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.write_all(b"\n")?;
    f.sync_all()
}

/// Opens the index directory; an index built by another version is set aside. Returns
/// the index and whether it is new (empty, to be filled from the store).
fn open_or_reset_index(settings: &Settings) -> Result<(SearchIndex, bool)> {
    let existed = settings.index_dir.join("meta.json").exists();
    match SearchIndex::open_or_create(&settings.index_dir) {
        Ok(index) => Ok((index, !existed)),
        Err(qd_search::Error::SchemaMismatch { reason, .. }) => {
            warn!(%reason, "search index does not fit this version; rebuilding it from the store");
            std::fs::remove_dir_all(&settings.index_dir)
                .with_context(|| format!("removing {}", settings.index_dir.display()))?;
            Ok((SearchIndex::open_or_create(&settings.index_dir)?, true))
        }
        Err(e) => Err(e.into()),
    }
}

fn is_writer_busy(e: &anyhow::Error) -> bool {
    e.downcast_ref::<SyncError>()
        .is_some_and(SyncError::is_writer_busy)
}

async fn rebuild_index(settings: &Settings, store: &Store, index: &SearchIndex) -> Result<u64> {
    Ok(qd_search::sync::reindex(
        store,
        index,
        settings.writer_heap_bytes,
        settings.writer_threads,
        &|_| {},
    )
    .await?)
}

/// Opens the index and brings it up to date with the store: an index built by another
/// version is set aside, a missing one is rebuilt from the store, and queued changes
/// left by a crash are applied. When another process (a running `serve`) holds the index
/// writer, catching up is its job and this one only reads.
pub async fn open_index(settings: &Settings, store: &Store) -> Result<SearchIndex> {
    let (index, fresh) = open_or_reset_index(settings)?;
    // A rebuild commits once, at its end: one that a crash cut short leaves an index
    // with no document at all (tantivy wrote `meta.json` when it created it), while the
    // store's queue no longer holds the older messages. So an index without a single
    // document, live or deleted, is rebuilt as well when the store has messages.
    let empty = fresh || (index.num_docs()? == 0 && index.deleted_docs()? == 0);
    if empty && store.max_message_id().await?.is_some() {
        match rebuild_index(settings, store, &index).await {
            Ok(n) => info!(documents = n, "search index rebuilt from the store"),
            // Another process (a running import or `serve`) holds the writer of an index
            // that exists: it is filling it.
            Err(e) if !fresh && is_writer_busy(&e) => {
                tracing::debug!("index empty and its writer busy; another process fills it");
            }
            Err(e) => return Err(e),
        }
    }
    match indexer(settings, store, &index) {
        Ok(mut idx) => {
            let n = idx.drain(settings.commit_every).await?;
            if n > 0 {
                info!(changes = n, "search index caught up with the store");
            }
            // Deleted documents a crash, a failed merge or replaced documents left in
            // the segment files go now, not at some later deletion.
            if index.deleted_docs()? > 0 {
                idx.merge_away_deleted()?;
            }
        }
        Err(e) if e.is_writer_busy() => {
            tracing::debug!("index writer busy; another process keeps it current");
        }
        Err(e) => return Err(e.into()),
    }
    Ok(index)
}

/// A retention run (not a dry run) as `retention run` and `bench retention` do it: the
/// index is opened first; once the run knows which messages its ticket deletes take,
/// their documents leave the index (deleted, committed, merged away) on a blocking
/// thread while the store deletes the rows. The queued deletes are applied afterwards
/// and find nothing left; the WAL is checkpointed. When another process holds the index
/// writer (a running `serve`), its indexer applies the queue instead.
pub async fn retention_run(
    settings: &Settings,
    store: &Store,
    opts: &qd_retention::RunOptions,
) -> Result<qd_retention::RunReport> {
    let index = open_index(settings, store).await?;
    let mut idle = match indexer(settings, store, &index) {
        Ok(i) => Some(i),
        Err(e) if e.is_writer_busy() => None,
        Err(e) => return Err(e.into()),
    };
    let mut early: Option<tokio::task::JoinHandle<Result<Indexer, SyncError>>> = None;
    let mut handed: Vec<i64> = Vec::new();
    let report = qd_retention::run_with(store, &settings.retention, opts, &mut |ids| {
        if let Some(mut idx) = idle.take() {
            handed.clone_from(&ids);
            early = Some(tokio::task::spawn_blocking(move || {
                idx.delete_now(&ids)?;
                Ok(idx)
            }));
        }
    })
    .await;
    let idx = match early {
        Some(h) => Some(h.await.context("search index task")??),
        None => idle,
    };
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            // The index let go of these before the store deleted them, and the store's
            // transaction failed: queue them again, so that what is still stored is
            // found again (and what did go stays out).
            if !handed.is_empty() {
                store
                    .search_queue_upsert(&handed, chrono::Utc::now())
                    .await
                    .context("queueing the messages of the failed deletion for the index again")?;
                if let Some(mut idx) = idx {
                    idx.drain(settings.commit_every).await?;
                }
            }
            return Err(e.into());
        }
    };
    if let Some(mut idx) = idx {
        idx.drain(settings.commit_every).await?;
    }
    store.checkpoint_wal().await?;
    Ok(report)
}

fn indexer(settings: &Settings, store: &Store, index: &SearchIndex) -> Result<Indexer, SyncError> {
    Indexer::new(
        store.clone(),
        index.clone(),
        settings.writer_heap_bytes,
        settings.writer_threads,
    )
}

async fn serve(settings: &Settings, env: &[(String, String)]) -> Result<ExitCode> {
    let Some(store) = open_store_waiting(settings).await? else {
        info!("stopped while waiting for the database");
        return Ok(ExitCode::SUCCESS);
    };
    let index = open_index(settings, &store).await?;
    let shutdown = Arc::new(tokio::sync::Notify::new());
    let stopping = Arc::new(AtomicBool::new(false));

    // Indexer worker: follows the search queue with sub-second latency.
    let mut idx = indexer(settings, &store, &index)?;
    let idx_stop = stopping.clone();
    let indexer_task = tokio::spawn(async move {
        while !idx_stop.load(Ordering::Relaxed) {
            match idx.pull(1_000).await {
                Ok(0) => {
                    // Idle: merges away what a failed merge left (see Indexer::commit).
                    if let Err(e) = idx.commit().await {
                        warn!(error = %e, "merging deleted documents out of the search index failed; retrying later");
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await
                }
                Ok(_) => {
                    if let Err(e) = idx.commit().await {
                        warn!(error = %e, "search index commit failed; retrying");
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                }
                Err(e) => {
                    warn!(error = %e, "search indexer failed; retrying");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
        idx.commit().await
    });

    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    info!(listen = %settings.listen, data_dir = %settings.data_dir.display(), "quietdesk serving");
    let app = qd_web::router(qd_web::AppState::new(store.clone(), index.clone()));
    let sd = shutdown.clone();
    let server = tokio::spawn(async move { axum_serve(listener, app, sd).await });

    let ingest_stop = tokio_util::sync::CancellationToken::new();
    let ingester =
        crate::ingest_cmd::spawn_for_serve(settings, &store, env, ingest_stop.clone()).await?;

    // Outbox worker: sends acknowledgements (and later staff replies) through [smtp].
    let outbox_task = match &settings.smtp {
        Some(smtp) => {
            let worker = qd_outbound::Worker::new(smtp.clone()).context("[smtp]")?;
            let store = store.clone();
            let stop = ingest_stop.clone();
            info!("outbox worker starting");
            Some(tokio::spawn(async move {
                worker
                    .run(&store, &SystemClock, stop.cancelled_owned())
                    .await
            }))
        }
        None => {
            if settings.ack.is_some() {
                warn!("[ack] is configured but [smtp] is not: acknowledgements wait in the outbox");
            }
            None
        }
    };

    // Retention worker: evaluates the policy on a schedule; its deletes reach the index
    // through the queue the indexer above follows (and merges away).
    let retention_stop = ingest_stop.clone();
    let retention_task = settings.retention_every.map(|every| {
        let store = store.clone();
        let policy = settings.retention.clone();
        tokio::spawn(async move {
            // The first run waits one interval: a fresh import gets time for its
            // customer statuses to be synced before non-customer mail starts to age out.
            loop {
                tokio::select! {
                    _ = retention_stop.cancelled() => break,
                    _ = tokio::time::sleep(every) => {}
                }
                let opts = qd_retention::RunOptions {
                    now: chrono::Utc::now(),
                    dry_run: false,
                    list_limit: 0,
                };
                match qd_retention::run(&store, &policy, &opts).await {
                    Ok(r) => {
                        let deleted: u64 = r.classes.values().map(|c| c.deleted.messages).sum();
                        info!(messages_deleted = deleted, seconds = r.seconds, "scheduled retention run");
                    }
                    Err(e) => warn!(error = %e, "scheduled retention run failed; next try at the next interval"),
                }
            }
        })
    });

    wait_for_signal().await;
    info!("shutting down");
    stopping.store(true, Ordering::Relaxed);
    shutdown.notify_waiters();
    ingest_stop.cancel();
    if let Some(task) = retention_task {
        task.await.context("retention task")?;
    }
    if let Some(task) = ingester {
        task.await.context("IMAP ingester task")??;
    }
    if let Some(task) = outbox_task {
        task.await.context("outbox worker task")??;
    }
    server.await.context("web server task")??;
    indexer_task.await.context("indexer task")??;
    store.close().await?;
    info!("stopped cleanly");
    Ok(ExitCode::SUCCESS)
}

/// [`open_store`] for `serve`: a database that cannot be reached yet (still starting,
/// restarting, failing over) is waited for, with a warning and a growing pause (0.5 s up
/// to 30 s) between attempts, until it answers or SIGTERM/SIGINT ends the wait (`None`).
/// Any other error (a wrong URL, a refused login, a missing database) ends `serve`.
async fn open_store_waiting(settings: &Settings) -> Result<Option<Store>> {
    let mut pause = Duration::from_millis(500);
    let signal = wait_for_signal();
    tokio::pin!(signal);
    loop {
        let error = tokio::select! {
            opened = open_store(settings) => match opened {
                Ok(store) => return Ok(Some(store)),
                Err(e) => e,
            },
            () = &mut signal => return Ok(None),
        };
        let unavailable = error
            .downcast_ref::<qd_store::Error>()
            .is_some_and(qd_store::Error::is_unavailable);
        if !unavailable {
            return Err(error);
        }
        warn!(error = %error, retry_in_ms = pause.as_millis() as u64, "database unavailable; waiting for it");
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = &mut signal => return Ok(None),
        }
        pause = (pause * 2).min(Duration::from_secs(30));
    }
}

async fn axum_serve(
    listener: tokio::net::TcpListener,
    app: qd_web::Router,
    shutdown: Arc<tokio::sync::Notify>,
) -> Result<()> {
    qd_web::serve(listener, app, async move { shutdown.notified().await }).await?;
    Ok(())
}

pub(crate) async fn wait_for_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// The progress bars' look: `{bar} 1200/5000 <what>  830/s  eta 5s`.
pub(crate) fn bar_style(what: &str) -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template(&format!(
        "{{bar:40}} {{pos}}/{{len}} {what}  {{per_sec}}  eta {{eta}}"
    ))
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
}

struct Bar(indicatif::ProgressBar);

impl qd_ingest::Progress for Bar {
    fn set_total(&self, total: u64) {
        self.0.set_length(total);
        self.0.set_style(bar_style("messages"));
    }

    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
}

async fn import(settings: &Settings, args: &ImportArgs) -> Result<ExitCode> {
    let store = open_store(settings).await?;
    if args.restart {
        store
            .delete_checkpoint(&qd_ingest::source_key(&args.path))
            .await?;
    }
    let index = open_index(settings, &store).await?;
    let mut idx = indexer(settings, &store, &index)?;
    let done = Arc::new(AtomicBool::new(false));
    let idx_done = done.clone();
    let commit_every = settings.commit_every;
    // The indexer runs beside the import and follows the queue; the import never waits
    // for it, and whatever it has not committed when we stop is still queued.
    let indexer_task = tokio::spawn(async move {
        let mut total = 0u64;
        loop {
            let n = idx.pull(5_000).await?;
            total += n as u64;
            if idx.pending() >= commit_every {
                idx.commit().await?;
            }
            if n == 0 {
                if idx_done.load(Ordering::Acquire) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        total += idx.drain(commit_every).await?;
        Ok::<u64, SyncError>(total)
    });

    let show_bar = !args.json && std::io::stderr().is_terminal();
    let bar = Bar(if show_bar {
        indicatif::ProgressBar::new_spinner()
    } else {
        indicatif::ProgressBar::hidden()
    });
    let started = std::time::Instant::now();
    let result =
        qd_ingest::import_path(&store, &args.path, &settings.ingest, &SystemClock, &bar).await;
    bar.0.finish_and_clear();
    done.store(true, Ordering::Release);
    let indexed = indexer_task.await.context("indexer task")?;
    let mut summary = match result {
        Ok(summary) => summary,
        // Only the database can fail half-way through: say what is kept and what to do.
        Err(e @ qd_ingest::Error::Store(_)) => {
            return Err(anyhow::Error::new(e).context(format!(
                "import of {} stopped (the messages stored before this are kept; the same \
                 command resumes after them)",
                args.path.display()
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let indexed = indexed?;
    // End to end: the store's own time plus the index catching up with the queue.
    let stored_seconds = summary.seconds;
    summary.seconds = started.elapsed().as_secs_f64();
    if summary.seconds > 0.0 {
        summary.messages_per_sec = summary.imported as f64 / summary.seconds;
    }
    store.close().await?;
    if args.json {
        let mut v = serde_json::to_value(&summary)?;
        v["indexed"] = indexed.into();
        v["stored_seconds"] = stored_seconds.into();
        out!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        out!(
            "imported {} messages ({} new tickets), {} duplicates, {} failed, {} skipped (not mail), {} with defects — {:.1} s, {:.0} msg/s",
            summary.imported,
            summary.tickets,
            summary.duplicates,
            summary.failed,
            summary.skipped,
            summary.defective,
            summary.seconds,
            summary.messages_per_sec
        );
        if summary.forgotten > 0 {
            out!(
                "  {} not taken back: the store deleted them before (retention or erasure)",
                summary.forgotten
            );
        }
        for f in &summary.failures {
            out!("  failed {}: {}", f.position, f.reason);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn search(settings: &Settings, args: &SearchArgs) -> Result<ExitCode> {
    let query = match Query::parse(&args.query) {
        Ok(q) => q,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let store = open_store(settings).await?;
    let index = open_index(settings, &store).await?;
    let hits = qd_search::sync::search(&store, &index, &query, args.limit).await?;
    // What staff saw is audited: the tickets whose messages the search showed.
    let mut seen = Vec::new();
    for h in &hits {
        if let Some(t) = store.ticket_by_number(h.ticket).await? {
            if !seen.contains(&t.id) {
                seen.push(t.id);
            }
        }
    }
    store
        .audit_many(
            &settings.actor,
            "search",
            "ticket",
            &seen,
            chrono::Utc::now(),
        )
        .await?;
    if args.json {
        let out: Vec<serde_json::Value> = hits
            .iter()
            .map(|h| {
                serde_json::json!({
                    "ticket": h.ticket,
                    "ticket_ref": settings.ticket_ref.render(h.ticket),
                    "message_id": h.message_id,
                    "message_db_id": h.message_db_id,
                    "subject": h.subject,
                    "snippet": h.snippet,
                    "score": h.score,
                })
            })
            .collect();
        out!("{}", serde_json::to_string_pretty(&out)?);
    } else if hits.is_empty() {
        out!("no messages match");
    } else {
        for h in &hits {
            out!(
                "{}  {:.2}  {}\n    {}",
                settings.ticket_ref.render(h.ticket),
                h.score,
                h.subject,
                h.snippet
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn reindex(settings: &Settings) -> Result<ExitCode> {
    let store = open_store(settings).await?;
    let (index, _) = open_or_reset_index(settings)?;
    let n = rebuild_index(settings, &store, &index).await?;
    store.close().await?;
    out!("reindexed {n} messages");
    Ok(ExitCode::SUCCESS)
}

async fn stats(settings: &Settings, json: bool) -> Result<ExitCode> {
    let store = open_store(settings).await?;
    let index = open_index(settings, &store).await?;
    let s = store.stats().await?;
    let index_documents = index.num_docs()?;
    // Deleted documents still in segment files (tombstoned, not yet merged away).
    let index_deleted = index.deleted_docs()?;
    store.close().await?;
    if json {
        let mut v = serde_json::to_value(&s)?;
        v["index_documents"] = index_documents.into();
        v["index_deleted_documents"] = index_deleted.into();
        out!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        out!("customers             {}", s.customers);
        out!("contacts              {}", s.contacts);
        out!("tickets               {}", s.tickets);
        out!("messages              {}", s.messages);
        out!("quarantined messages  {}", s.quarantined_messages);
        out!("raw-mail blobs        {}", s.blobs);
        out!("held on mail servers  {}", s.held_on_server);
        out!("index documents       {}", index_documents);
        out!("  deleted, not merged  {}", index_deleted);
        out!("search queue          {}", s.search_queue);
    }
    Ok(ExitCode::SUCCESS)
}
