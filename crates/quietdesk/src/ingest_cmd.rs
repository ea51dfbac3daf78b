//! `quietdesk ingest`: mail from IMAP mailboxes into the store, once (`--once`) or until
//! SIGINT/SIGTERM; and the same ingester as a `serve` worker. Secrets named by
//! environment variables are resolved here, since only the binary reads the environment.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;
use qd_core::SystemClock;
use qd_ingest::imap::{self, IngestContext, MailboxConfig, Secret};
use qd_ingest::steps::Steps;
use qd_store::Store;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::Settings;

/// The password of a mailbox given with `--mailbox`.
pub const PASSWORD_ENV: &str = "QUIETDESK_IMAP_PASSWORD";

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Fetch everything new, print a summary and exit (without it: keep watching, with
    /// IDLE, until SIGINT/SIGTERM).
    #[arg(long)]
    pub once: bool,
    /// Ingest from this mailbox instead of the configured ones:
    /// imap://user@host:port/FOLDER or imaps://… (password from QUIETDESK_IMAP_PASSWORD).
    #[arg(long, value_name = "URL")]
    pub mailbox: Option<String>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Turns `secret = { env = "VAR" }` into the value of VAR.
pub fn resolve_secrets(
    mailboxes: &[MailboxConfig],
    env: &[(String, String)],
) -> Result<Vec<MailboxConfig>> {
    mailboxes
        .iter()
        .map(|m| {
            let mut m = m.clone();
            if let Secret::Env(var) = &m.secret {
                let value = env
                    .iter()
                    .find(|(k, _)| k == var)
                    .map(|(_, v)| v.clone())
                    .with_context(|| {
                        format!(
                            "mailbox {}: environment variable {var} (its secret) is not set",
                            m.name
                        )
                    })?;
                m.secret = Secret::Password(value);
            }
            m.validate()?;
            Ok(m)
        })
        .collect()
}

fn mailboxes(
    settings: &Settings,
    args: &IngestArgs,
    env: &[(String, String)],
) -> Result<Vec<MailboxConfig>> {
    match &args.mailbox {
        Some(url) => {
            let password = env
                .iter()
                .find(|(k, _)| k == PASSWORD_ENV)
                .map(|(_, v)| v.clone())
                .with_context(|| format!("--mailbox needs the password in {PASSWORD_ENV}"))?;
            let m = imap::parse_mailbox_url(url, &password)?;
            m.validate()?;
            Ok(vec![m])
        }
        None => resolve_secrets(&settings.mailboxes, env),
    }
}

/// The ingest context with the pipeline steps the configuration asks for: the filter
/// (`ingest.filter`, with sender authentication over DNS when `filter.dns.enabled`)
/// before the store, acknowledgements (`[ack]`) after it.
async fn context(settings: &Settings, store: Store) -> Result<IngestContext> {
    let clock: Arc<dyn qd_core::Clock> = Arc::new(SystemClock);
    let mut steps = Steps::new(store.clone(), clock.clone());
    let mut any = false;
    if settings.filter_ingest {
        let filter = qd_filter::Filter::new(settings.filter.clone()).context("[filter]")?;
        steps = steps.with_filter(Arc::new(filter));
        let dns = &settings.filter.dns;
        if dns.enabled {
            let auth = qd_filter::Authenticator::new(dns).context("[filter.dns]")?;
            // A few lookups per message, each bounded by the query timeout.
            let per_message = std::time::Duration::from_millis(dns.timeout_ms.saturating_mul(4));
            steps = steps.with_authenticator(Arc::new(auth), per_message);
        }
        // What staff taught the filter; reloaded after batches when it changes.
        steps
            .refresh_learner()
            .await
            .context("loading the filter's learned model")?;
        any = true;
    }
    if let Some(ack) = &settings.ack {
        steps = steps.with_ack(ack.clone());
        any = true;
    }
    Ok(IngestContext {
        store,
        settings: settings.ingest.clone(),
        clock,
        hook: any.then(|| Arc::new(steps) as Arc<dyn imap::AfterStore>),
    })
}

pub async fn ingest(
    settings: &Settings,
    args: &IngestArgs,
    env: &[(String, String)],
) -> Result<ExitCode> {
    let mailboxes = mailboxes(settings, args, env)?;
    if mailboxes.is_empty() {
        bail!("no mailboxes: configure [[ingest.mailboxes]] or pass --mailbox imap://user@host/FOLDER");
    }
    let store = crate::commands::open_store(settings).await?;
    let ctx = context(settings, store.clone()).await?;
    if !args.once {
        let shutdown = CancellationToken::new();
        let mut task = tokio::spawn(imap::run(ctx, mailboxes, shutdown.clone()));
        info!("ingesting until SIGINT/SIGTERM");
        let ended = tokio::select! {
            _ = crate::commands::wait_for_signal() => None,
            r = &mut task => Some(r),
        };
        shutdown.cancel();
        match ended {
            Some(r) => r.context("ingest task")??,
            None => task.await.context("ingest task")??,
        }
        store.close().await?;
        return Ok(ExitCode::SUCCESS);
    }
    let summary = imap::ingest_once(&ctx, &mailboxes).await?;
    store.close().await?;
    if args.json {
        out!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        out!(
            "fetched {} messages: {} stored ({} new tickets), {} duplicates, {} failed, {} with defects — {:.1} s, {:.0} msg/s",
            summary.fetched,
            summary.stored,
            summary.tickets,
            summary.duplicates,
            summary.failed,
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
    for f in &summary.folders {
        if let Some(e) = &f.error {
            eprintln!("error: {e}");
        }
    }
    Ok(if summary.errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Starts the continuous ingester for `serve` when mailboxes are configured.
pub async fn spawn_for_serve(
    settings: &Settings,
    store: &Store,
    env: &[(String, String)],
    shutdown: CancellationToken,
) -> Result<Option<tokio::task::JoinHandle<Result<(), imap::ImapError>>>> {
    let mailboxes = resolve_secrets(&settings.mailboxes, env)?;
    if mailboxes.is_empty() {
        return Ok(None);
    }
    info!(mailboxes = mailboxes.len(), "IMAP ingester starting");
    let ctx = context(settings, store.clone()).await?;
    Ok(Some(tokio::spawn(imap::run(ctx, mailboxes, shutdown))))
}
