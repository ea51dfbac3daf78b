//! The continuous mode (`serve`): one task per watched folder, each with its own
//! connection (IDLE watches the selected folder only).
//!
//! A task loops: sync, then wait for news — IDLE where the server has it, else a sleep
//! of `poll_interval` — and sync again. IDLE is ended and re-issued every
//! `min(idle_renew, stall_timeout)`: RFC 2177 servers may drop an IDLE after 30 minutes,
//! and the DONE round trip proves the connection is alive (a silent peer fails it within
//! `stall_timeout` and is replaced). Every failure drops the connection and reconnects
//! after an exponential backoff with jitter; cancellation stops the task between steps
//! or mid-fetch, never mid-transaction.

use std::time::Duration;

use rand::Rng;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::config::MailboxConfig;
use super::conn::Connected;
use super::sync::{open, sync_folder, timed, Server};
use super::{FolderSummary, ImapError, IngestContext};

const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Runs the ingester for all folders of all mailboxes until `shutdown` is cancelled.
/// Configuration errors are returned at once; connection and authentication failures
/// are logged and retried with backoff, forever.
pub async fn run(
    ctx: IngestContext,
    mailboxes: Vec<MailboxConfig>,
    shutdown: CancellationToken,
) -> Result<(), ImapError> {
    for m in &mailboxes {
        m.validate()?;
    }
    let mut tasks = JoinSet::new();
    for m in mailboxes {
        for folder in m.folders.clone() {
            tasks.spawn(watch_folder(
                ctx.clone(),
                m.clone(),
                folder,
                shutdown.clone(),
            ));
        }
    }
    while let Some(r) = tasks.join_next().await {
        if let Err(e) = r {
            warn!(error = %e, "an IMAP watcher task ended abnormally");
        }
    }
    Ok(())
}

/// The delay before reconnect attempt `attempt` (0-based): 1 s doubling to 5 min
/// (30 s at least for errors a reconnect will not cure), times a random 50–100 % so
/// many watchers do not reconnect in step after a server restart.
pub fn backoff(attempt: u32, permanent: bool) -> Duration {
    let base = if permanent { 30.0 } else { 1.0 };
    let secs = (base * 2f64.powi(attempt.min(16) as i32)).min(BACKOFF_MAX.as_secs_f64());
    let jitter = rand::thread_rng().gen_range(0.5..=1.0);
    Duration::from_secs_f64(secs * jitter)
}

async fn watch_folder(
    ctx: IngestContext,
    m: MailboxConfig,
    folder: String,
    shutdown: CancellationToken,
) {
    let mut attempt = 0u32;
    while !shutdown.is_cancelled() {
        match session_loop(&ctx, &m, &folder, &shutdown, &mut attempt).await {
            Ok(()) => break,
            Err(e) => {
                if shutdown.is_cancelled() {
                    break;
                }
                let delay = backoff(attempt, e.is_permanent());
                attempt = attempt.saturating_add(1);
                warn!(mailbox = %m.name, folder = %folder, error = %e,
                    retry_in_secs = delay.as_secs(), "IMAP ingest interrupted; reconnecting");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.cancelled() => break,
                }
            }
        }
    }
    info!(mailbox = %m.name, folder = %folder, "IMAP watcher stopped");
}

enum Wake {
    News,
    Renew,
    Shutdown,
}

/// One connection's life: returns Ok on shutdown, Err when the connection must be
/// replaced.
async fn session_loop(
    ctx: &IngestContext,
    m: &MailboxConfig,
    folder: &str,
    shutdown: &CancellationToken,
    attempt: &mut u32,
) -> Result<(), ImapError> {
    let stall = m.stall_timeout();
    let mut server = tokio::select! {
        s = open(m) => s?,
        _ = shutdown.cancelled() => return Ok(()),
    };
    // Recovery (left-over after-ingest actions, held mail tried again) runs on each new
    // connection and then every `held_retry` on one that stays up.
    let mut recover = true;
    let mut recovered_at = std::time::Instant::now();
    loop {
        if recovered_at.elapsed() >= m.held_retry() {
            recover = true;
        }
        if recover {
            recovered_at = std::time::Instant::now();
        }
        let mut summary = FolderSummary {
            mailbox: m.name.clone(),
            folder: folder.to_string(),
            source: m.source_key(folder),
            ..FolderSummary::default()
        };
        let synced =
            sync_folder(ctx, m, &mut server, folder, recover, shutdown, &mut summary).await;
        if summary.fetched > 0 {
            info!(mailbox = %m.name, folder, fetched = summary.fetched, stored = summary.stored,
                duplicates = summary.duplicates, forgotten = summary.forgotten,
                failed = summary.failed, "IMAP mail ingested");
        }
        if shutdown.is_cancelled() {
            return Ok(());
        }
        synced?;
        recover = false;

        // The backoff starts over only once a whole wait (a poll interval, an IDLE
        // cycle) went well: a server that takes the login and the sync but then drops
        // IDLE is not hammered once a second.
        if !server.conn.idle {
            tokio::select! {
                _ = tokio::time::sleep(m.poll_interval()) => {
                    *attempt = 0;
                    continue;
                }
                _ = shutdown.cancelled() => {
                    let _ = tokio::time::timeout(Duration::from_secs(2), server.conn.session.logout()).await;
                    return Ok(());
                }
            }
        }

        let Server {
            conn:
                Connected {
                    session,
                    idle,
                    mv,
                    uidplus,
                },
            delimiter,
            move_target,
        } = server;
        let cycle = m.idle_renew().min(stall);
        let mut handle = session.idle();
        timed(stall, &m.name, "IDLE", handle.init())
            .await?
            .map_err(|e| ImapError::Protocol {
                mailbox: m.name.clone(),
                reason: format!("IDLE: {}", super::sync::describe(e)),
            })?;
        let wake = {
            let (fut, _stop) = handle.wait_with_timeout(cycle);
            tokio::select! {
                r = tokio::time::timeout(cycle, fut) => match r {
                    Ok(Ok(async_imap::extensions::idle::IdleResponse::NewData(_))) => Wake::News,
                    Ok(Ok(_)) | Err(_) => Wake::Renew,
                    Ok(Err(e)) => return Err(ImapError::Protocol {
                        mailbox: m.name.clone(),
                        reason: format!("during IDLE: {}", super::sync::describe(e)),
                    }),
                },
                _ = shutdown.cancelled() => Wake::Shutdown,
            }
        };
        if matches!(wake, Wake::Shutdown) {
            return Ok(());
        }
        if matches!(wake, Wake::Renew) {
            tracing::debug!(mailbox = %m.name, folder, "renewing IDLE");
        }
        let session = timed(stall, &m.name, "IDLE DONE", handle.done())
            .await?
            .map_err(|e| ImapError::Protocol {
                mailbox: m.name.clone(),
                reason: format!("ending IDLE: {}", super::sync::describe(e)),
            })?;
        *attempt = 0;
        server = Server {
            conn: Connected {
                session,
                idle,
                mv,
                uidplus,
            },
            delimiter,
            move_target,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        for _ in 0..50 {
            let first = backoff(0, false);
            assert!(first >= Duration::from_millis(500) && first <= Duration::from_secs(1));
            let fifth = backoff(4, false);
            assert!(fifth >= Duration::from_secs(8) && fifth <= Duration::from_secs(16));
            assert!(backoff(40, false) <= BACKOFF_MAX);
            assert!(backoff(0, true) >= Duration::from_secs(15));
        }
    }
}
