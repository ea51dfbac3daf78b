//! One pass over one folder: everything above the checkpoint is fetched, stored with
//! the checkpoint in the same transaction, then moved/flagged/deleted on the server.
//!
//! The fetch of batch k+1 overlaps the parse and store of batch k (a channel of two
//! batches between them); parsing runs on the rayon pool.

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use qd_store::{BatchAcks, BatchOutcome, BatchSettings, Checkpoint, HeldPosition, NewMessage};
use rayon::prelude::*;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::config::{AfterIngest, MailboxConfig};
use super::conn::{connect, Connected};
use super::{FolderSummary, ImapError, IngestContext, StoredBatch, REFUSED_KEYWORD};
use crate::pipeline::MAX_REPORTED;
use crate::source::ItemError;
use crate::Failure;

/// A batch is also cut at this many raw bytes, so a run of large messages does not
/// hold gigabytes in memory (two batches are in flight).
const BATCH_BYTES: u64 = 64 * 1024 * 1024;
/// UID ranges per command when applying an action to a scattered set.
const RANGES_PER_COMMAND: usize = 500;

/// An authenticated connection and what we learned about the server once.
pub(crate) struct Server {
    pub conn: Connected,
    /// The hierarchy delimiter (`.` on Dovecot with Maildir++, `/` on most others).
    pub delimiter: Option<String>,
    /// The move target in the server's naming.
    pub move_target: Option<String>,
}

pub(crate) async fn timed<T, F: Future<Output = T>>(
    limit: Duration,
    mailbox: &str,
    during: &'static str,
    fut: F,
) -> Result<T, ImapError> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| ImapError::Stalled {
            mailbox: mailbox.to_string(),
            during,
        })
}

fn proto(m: &MailboxConfig, e: impl std::fmt::Display) -> ImapError {
    ImapError::Protocol {
        mailbox: m.name.clone(),
        reason: describe(e),
    }
}

fn folder_err(m: &MailboxConfig, folder: &str, e: impl std::fmt::Display) -> ImapError {
    ImapError::Folder {
        mailbox: m.name.clone(),
        folder: folder.to_string(),
        reason: describe(e),
    }
}

/// Longest server or library text an error keeps.
const MAX_REASON: usize = 300;

/// An IMAP error as it may be logged and shown. async-imap reports a response it cannot
/// parse with the whole unparsed buffer, which during a FETCH is the raw mail (addresses,
/// subject, body): that text never leaves here. Other texts are cut short.
pub(crate) fn describe(e: impl std::fmt::Display) -> String {
    let text = e.to_string();
    if text.contains("during parsing of") {
        return "the server sent a response that could not be parsed".to_string();
    }
    match text.char_indices().nth(MAX_REASON) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// A configured folder name (`/` as separator) in the server's naming.
pub(crate) fn server_name(folder: &str, delimiter: Option<&str>) -> String {
    match delimiter {
        Some(d) if d != "/" && !folder.eq_ignore_ascii_case("INBOX") => folder.replace('/', d),
        _ => folder.to_string(),
    }
}

/// Connects and prepares: learns the delimiter and creates the move target when absent.
pub(crate) async fn open(m: &MailboxConfig) -> Result<Server, ImapError> {
    let stall = m.stall_timeout();
    let mut conn = connect(m, stall).await?;
    let delimiter = {
        let names = timed(
            stall,
            &m.name,
            "LIST",
            conn.session.list(Some(""), Some("\"\"")),
        )
        .await?
        .map_err(|e| proto(m, e))?;
        let mut names = std::pin::pin!(names);
        let mut delimiter = None;
        while let Some(n) = timed(stall, &m.name, "LIST", names.next()).await? {
            let n = n.map_err(|e| proto(m, e))?;
            if delimiter.is_none() {
                delimiter = n.delimiter().map(str::to_string);
            }
        }
        delimiter
    };
    let move_target = match &m.after {
        AfterIngest::Move(f) => {
            let target = server_name(f, delimiter.as_deref());
            // CREATE fails when the folder exists (Dovecot: [ALREADYEXISTS]); a real
            // failure shows up as a failed MOVE, which is retried on the next pass.
            match timed(stall, &m.name, "CREATE", conn.session.create(&target)).await? {
                Ok(()) => {
                    info!(mailbox = %m.name, folder = %target, "created the folder for processed mail")
                }
                Err(e) => {
                    debug!(mailbox = %m.name, folder = %target, error = %e, "CREATE (folder probably exists)")
                }
            }
            Some(target)
        }
        _ => None,
    };
    Ok(Server {
        conn,
        delimiter,
        move_target,
    })
}

/// One pass over every folder of a mailbox on a fresh connection (`ingest --once`).
pub(crate) async fn once(
    ctx: &IngestContext,
    m: &MailboxConfig,
    cancel: &CancellationToken,
) -> Vec<FolderSummary> {
    let mut out = Vec::new();
    let mut server: Option<Server> = None;
    for folder in &m.folders {
        let mut summary = FolderSummary {
            mailbox: m.name.clone(),
            folder: folder.clone(),
            source: m.source_key(folder),
            ..FolderSummary::default()
        };
        if server.is_none() {
            match open(m).await {
                Ok(s) => server = Some(s),
                Err(e) => {
                    summary.error = Some(e.to_string());
                    out.push(summary);
                    continue;
                }
            }
        }
        if let Some(s) = server.as_mut() {
            if let Err(e) = sync_folder(ctx, m, s, folder, true, cancel, &mut summary).await {
                summary.error = Some(e.to_string());
                // The connection may be mid-command; the next folder gets a new one.
                server = None;
            }
        }
        out.push(summary);
    }
    if let Some(mut s) = server {
        let _ = tokio::time::timeout(Duration::from_secs(5), s.conn.session.logout()).await;
    }
    out
}

/// The raw messages of one batch and the checkpoint that covers it.
struct RawBatch {
    items: Vec<(u32, Vec<u8>)>,
    /// When the server received each message (INTERNALDATE), where it said.
    arrived: Arrivals,
    /// Highest UID handled once this batch is stored (refused UIDs included).
    checkpoint: u32,
    /// UIDs the checkpoint covers that are not stored, and why: recorded with it.
    held: Vec<(u32, &'static str)>,
}

/// UID → the server's INTERNALDATE: when the message reached the mailbox.
type Arrivals = std::collections::HashMap<u32, chrono::DateTime<chrono::Utc>>;

/// What [`fetch_bodies`] brought: the raw mail, and when the server received each.
#[derive(Default)]
struct Fetched {
    items: Vec<(u32, Vec<u8>)>,
    arrived: Arrivals,
    /// The UIDs in `items`: a message asked for again is not taken twice.
    seen: HashSet<u32>,
}

/// One batch as planned from the sizes: the UIDs to fetch, the checkpoint once stored,
/// and the refused (oversized) UIDs that checkpoint moves past.
struct Planned {
    uids: Vec<u32>,
    checkpoint: u32,
    refused: Vec<u32>,
    /// The most bytes one of `uids` may take (its size, or the limit when unknown).
    largest: u64,
}

/// The slowest link a message is expected to arrive over: a fetch waits for the next
/// message the stall timeout plus the time the largest one takes at this rate, so one
/// big message over a slow or throttled link is not taken for a stall.
const SLOWEST_LINK_BYTES_PER_SEC: u64 = 128 * 1024;

/// How long a body fetch may wait for one message of up to `largest` bytes.
fn body_wait(stall: Duration, largest: u64) -> Duration {
    stall + Duration::from_secs(largest / SLOWEST_LINK_BYTES_PER_SEC)
}

/// The checkpoint's position: the last UID handled, and while a rescan after a
/// UIDVALIDITY change has not passed its end, that end (`120/rescan:500`).
fn encode_position(last: u32, rescan_upto: Option<u32>) -> String {
    match rescan_upto {
        Some(end) if last < end => format!("{last}/rescan:{end}"),
        _ => last.to_string(),
    }
}

/// Reads [`encode_position`]; anything unreadable starts again from UID 1, where the
/// content hash keeps what is stored from being stored twice.
fn decode_position(position: &str) -> (u32, Option<u32>) {
    let (last, rest) = position.split_once('/').unwrap_or((position, ""));
    let last = last.parse().unwrap_or(0);
    let upto = rest
        .strip_prefix("rescan:")
        .and_then(|n| n.parse::<u32>().ok())
        .filter(|&end| last < end);
    (last, upto)
}

/// Reasons recorded for held UIDs: fixed texts, never anything from the mail.
const TOO_LARGE: &str = "over the size limit";
const NOT_RETURNED: &str = "the server did not return it";
const UNREADABLE: &str = "the server's reply for it could not be read";
const NOT_ASKED: &str = "not fetched yet: too many replies from the server could not be read";
const NOT_PREPARED: &str = "could not be prepared for storage";
const NOT_STORED: &str = "the database refused to store it (the error is logged at debug level)";

fn held_position(uid: u32, reason: &str) -> HeldPosition {
    HeldPosition {
        uid: i64::from(uid),
        reason: reason.to_string(),
    }
}

impl Fetched {
    /// Takes the raw mail of `uid`, unless it is here already (asked for again).
    fn add(&mut self, uid: u32, body: &[u8]) -> bool {
        if !self.seen.insert(uid) {
            return false;
        }
        self.items.push((uid, body.to_vec()));
        true
    }

    /// The UIDs asked for that were not fetched.
    fn missing(&self, asked: &[u32]) -> Vec<u32> {
        asked
            .iter()
            .copied()
            .filter(|u| !self.seen.contains(u))
            .collect()
    }
}

/// What a body fetch asks for; [`BODY_ONLY`] when the server's answer to it cannot be
/// read (the trouble may be in the INTERNALDATE or in flags sent along).
const BODY_ITEMS: &str = "(UID INTERNALDATE BODY.PEEK[])";
const BODY_ONLY: &str = "(UID BODY.PEEK[])";

/// Why a body fetch ended early.
enum FetchFailure {
    /// The server sent a reply async-imap cannot parse. The connection cannot go on:
    /// its reader keeps the bytes it failed on and fails on them again at every read,
    /// so every later command on it, and every later pass that asks for the same mail,
    /// would fail the same way.
    Unreadable,
    Failed(ImapError),
}

impl From<ImapError> for FetchFailure {
    fn from(e: ImapError) -> Self {
        FetchFailure::Failed(e)
    }
}

/// A reply the library could not parse (see [`FetchFailure::Unreadable`]).
fn is_unreadable(e: &async_imap::error::Error) -> bool {
    match e {
        async_imap::error::Error::Parse(_) => true,
        async_imap::error::Error::Io(io) => io.to_string().contains("during parsing of"),
        _ => false,
    }
}

/// Fetches the raw mail of `uids` (BODY.PEEK: the \\Seen flag stays as it was), and
/// when the server received each (INTERNALDATE) where `items` asks for it, into `got`;
/// a UID the server does not return is simply absent. `wait` bounds the wait for each
/// message ([`body_wait`]).
#[allow(clippy::too_many_arguments)]
async fn fetch_bodies(
    m: &MailboxConfig,
    session: &mut super::conn::Session,
    uids: &[u32],
    items: &str,
    stall: Duration,
    wait: Duration,
    cancel: &CancellationToken,
    got: &mut Fetched,
) -> Result<(), FetchFailure> {
    for set in uid_sets(uids) {
        let mut stream = timed(stall, &m.name, "UID FETCH", session.uid_fetch(&set, items))
            .await?
            .map_err(|e| proto(m, e))?;
        loop {
            let next = tokio::select! {
                n = timed(wait, &m.name, "UID FETCH", stream.next()) => n?,
                _ = cancel.cancelled() => return Err(ImapError::Protocol {
                    mailbox: m.name.clone(),
                    reason: "stopped".into(),
                }.into()),
            };
            let Some(item) = next else { break };
            let f = match item {
                Ok(f) => f,
                Err(e) if is_unreadable(&e) => return Err(FetchFailure::Unreadable),
                Err(e) => return Err(proto(m, e).into()),
            };
            if let (Some(uid), Some(body)) = (f.uid, f.body()) {
                if !got.add(uid, body) {
                    continue;
                }
                if let Some(at) = f.internal_date() {
                    got.arrived.insert(uid, at.with_timezone(&chrono::Utc));
                }
            }
        }
    }
    Ok(())
}

/// Reconnections one [`fetch_readable`] may make; each unreadable message costs about
/// three. Past them the UIDs not yet asked for are held, to be tried by a later pass: a
/// server whose every reply is unreadable costs a bounded number of logins per pass, not
/// three per message (providers lock accounts that log in too often).
const MAX_RECONNECTS: u32 = 10;

/// [`fetch_bodies`] past replies that cannot be read. After one, the connection is
/// replaced (see [`FetchFailure::Unreadable`]) and the first UID not yet fetched is
/// asked for alone, then alone without INTERNALDATE; the rest is fetched together
/// again, and so on until every UID was asked for or [`MAX_RECONNECTS`] is reached.
/// Returns the UIDs to hold and why: those whose reply could not be read either way
/// ([`UNREADABLE`]) and those left for a later pass ([`NOT_ASKED`]). The caller holds
/// them (left on the server, reported), so one such message never blocks the folder.
/// The connection is usable when this returns.
#[allow(clippy::too_many_arguments)]
async fn fetch_readable(
    m: &MailboxConfig,
    server: &mut Server,
    folder: &str,
    uv: u32,
    uids: &[u32],
    wait: Duration,
    cancel: &CancellationToken,
    got: &mut Fetched,
) -> Result<Vec<(u32, &'static str)>, ImapError> {
    let stall = m.stall_timeout();
    let mut rest = uids.to_vec();
    let mut held = Vec::new();
    let mut reconnects = 0u32;
    loop {
        match fetch_bodies(
            m,
            &mut server.conn.session,
            &rest,
            BODY_ITEMS,
            stall,
            wait,
            cancel,
            got,
        )
        .await
        {
            Ok(()) => return Ok(held),
            Err(FetchFailure::Failed(e)) => return Err(e),
            Err(FetchFailure::Unreadable) => {}
        }
        rest = got.missing(&rest);
        rest.sort_unstable();
        warn!(mailbox = %m.name, folder, messages = rest.len(),
            "the server sent a reply that could not be read; reconnecting and asking for the rest one message at a time");
        reopen(m, server, folder, uv).await?;
        reconnects += 1;
        let Some((&first, after)) = rest.split_first() else {
            return Ok(held);
        };
        for items in [BODY_ITEMS, BODY_ONLY] {
            match fetch_bodies(
                m,
                &mut server.conn.session,
                &[first],
                items,
                stall,
                wait,
                cancel,
                got,
            )
            .await
            {
                Ok(()) => break,
                Err(FetchFailure::Failed(e)) => return Err(e),
                Err(FetchFailure::Unreadable) => {
                    reopen(m, server, folder, uv).await?;
                    reconnects += 1;
                    // The message itself read; what failed came after it.
                    if got.seen.contains(&first) {
                        break;
                    }
                    if items == BODY_ONLY {
                        warn!(mailbox = %m.name, folder, uid = first,
                            "the server's reply for this message could not be read; it stays on the server, held");
                        held.push((first, UNREADABLE));
                    }
                }
            }
        }
        rest = after.to_vec();
        if rest.is_empty() {
            return Ok(held);
        }
        if reconnects >= MAX_RECONNECTS {
            warn!(mailbox = %m.name, folder, messages = rest.len(),
                "too many replies from the server could not be read; the rest is held for a later pass");
            held.extend(rest.iter().map(|&u| (u, NOT_ASKED)));
            return Ok(held);
        }
    }
}

/// Replaces the connection with a new one on which `folder` is selected again. The
/// stuck one is closed first, so an account at its connection limit still gets the new
/// one. The UIDs in hand are only good under `uv`: a folder whose UIDVALIDITY changed
/// meanwhile ends the pass (the next one rescans it).
async fn reopen(
    m: &MailboxConfig,
    server: &mut Server,
    folder: &str,
    uv: u32,
) -> Result<(), ImapError> {
    use tokio::io::AsyncWriteExt;
    let stall = m.stall_timeout();
    // Closing our side ends the server's session (no LOGOUT: nothing can be read on it).
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        server.conn.session.get_mut().shutdown(),
    )
    .await;
    let mut fresh = open(m).await?;
    let name = server_name(folder, fresh.delimiter.as_deref());
    let mb = timed(stall, &m.name, "SELECT", fresh.conn.session.select(&name))
        .await?
        .map_err(|e| folder_err(m, folder, e))?;
    if mb.uid_validity != Some(uv) {
        return Err(folder_err(m, folder, "UIDVALIDITY changed during the pass"));
    }
    *server = fresh;
    Ok(())
}

/// `(UID, RFC822.SIZE)` of the messages in the UID set `set`. A FETCH line without a
/// size (an unsolicited FETCH of flags) says nothing here.
async fn fetch_sizes(
    m: &MailboxConfig,
    session: &mut super::conn::Session,
    set: &str,
    stall: Duration,
) -> Result<Vec<(u32, u32)>, FetchFailure> {
    let mut sizes = Vec::new();
    let mut stream = timed(
        stall,
        &m.name,
        "UID FETCH (sizes)",
        session.uid_fetch(set, "(UID RFC822.SIZE)"),
    )
    .await?
    .map_err(|e| proto(m, e))?;
    while let Some(item) = timed(stall, &m.name, "UID FETCH (sizes)", stream.next()).await? {
        let f = match item {
            Ok(f) => f,
            Err(e) if is_unreadable(&e) => return Err(FetchFailure::Unreadable),
            Err(e) => return Err(proto(m, e).into()),
        };
        if let (Some(uid), Some(size)) = (f.uid, f.size) {
            sizes.push((uid, size));
        }
    }
    Ok(sizes)
}

/// UID SEARCH that believes only a complete answer. async-imap's own `uid_search` returns
/// whatever came before the tagged reply without reading that reply's status, and an
/// empty set when the connection ends first. A NO, a BAD or a dropped connection then
/// read as "no such message": mail missing from a short FETCH was taken as expunged and
/// skipped, and held mail was let go as gone. Here the answer counts only once the tagged
/// OK arrives; anything else is an error that ends the pass before a checkpoint moves.
pub(crate) async fn uid_search(
    session: &mut super::conn::Session,
    query: impl AsRef<str>,
) -> async_imap::error::Result<HashSet<u32>> {
    use async_imap::error::Error;
    use async_imap::imap_proto::{MailboxDatum, Response, Status};
    let id = session
        .run_command(format!("UID SEARCH {}", query.as_ref()))
        .await?;
    let mut found = HashSet::new();
    loop {
        let Some(reply) = session.read_response().await? else {
            return Err(Error::ConnectionLost);
        };
        match reply.parsed() {
            Response::MailboxData(MailboxDatum::Search(uids)) => found.extend(uids.iter()),
            Response::Done {
                tag,
                status,
                outcome,
            } if *tag == id => {
                let said = outcome
                    .information
                    .as_deref()
                    .unwrap_or_default()
                    .to_owned();
                return match status {
                    Status::Ok => Ok(found),
                    Status::No => Err(Error::No(said)),
                    _ => Err(Error::Bad(said)),
                };
            }
            // Unsolicited data (EXISTS, EXPUNGE, flag changes): nothing this search uses.
            _ => {}
        }
    }
}

/// Which of `uids` the selected folder still holds.
async fn search_uids(
    m: &MailboxConfig,
    session: &mut super::conn::Session,
    uids: &[u32],
    stall: Duration,
) -> Result<Vec<u32>, ImapError> {
    let mut found = Vec::new();
    for set in uid_sets(uids) {
        let hits = timed(
            stall,
            &m.name,
            "UID SEARCH",
            uid_search(session, format!("UID {set}")),
        )
        .await?
        .map_err(|e| proto(m, e))?;
        found.extend(hits);
    }
    found.sort_unstable();
    Ok(found)
}

/// Renders UIDs as an IMAP set of ranges (`1:5,7,9:12`), in chunks of at most
/// [`RANGES_PER_COMMAND`] ranges.
pub(crate) fn uid_sets(uids: &[u32]) -> Vec<String> {
    let mut sorted: Vec<u32> = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    for u in sorted {
        match ranges.last_mut() {
            Some((_, end)) if *end + 1 == u => *end = u,
            _ => ranges.push((u, u)),
        }
    }
    ranges
        .chunks(RANGES_PER_COMMAND)
        .map(|chunk| {
            chunk
                .iter()
                .map(|&(a, b)| {
                    if a == b {
                        a.to_string()
                    } else {
                        format!("{a}:{b}")
                    }
                })
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect()
}

/// Syncs one folder on an open connection. `recover` re-applies the after-ingest action
/// to everything at or below the checkpoint (after a crash between a commit and the
/// move); it is set on the first pass of each connection.
pub(crate) async fn sync_folder(
    ctx: &IngestContext,
    m: &MailboxConfig,
    server: &mut Server,
    folder: &str,
    recover: bool,
    cancel: &CancellationToken,
    out: &mut FolderSummary,
) -> Result<(), ImapError> {
    let stall = m.stall_timeout();
    let source = m.source_key(folder);
    let name = server_name(folder, server.delimiter.as_deref());
    let mb = timed(stall, &m.name, "SELECT", server.conn.session.select(&name))
        .await?
        .map_err(|e| folder_err(m, folder, e))?;
    let uv = mb
        .uid_validity
        .ok_or_else(|| folder_err(m, folder, "the server reports no UIDVALIDITY"))?;
    out.uidvalidity = Some(uv);
    let cp = ctx.store.checkpoint(&source).await?;
    // `rescan_upto`: after a UIDVALIDITY change, the highest UID of the folder as it was
    // then. Up to it, mail whose Message-ID is stored counts as a duplicate; it is kept
    // in the checkpoint so a rescan cut short keeps that guard when it resumes.
    let (last, mut rescan_upto) = match &cp {
        Some(c) if c.uidvalidity == Some(i64::from(uv)) => {
            let (last, upto) = decode_position(&c.position);
            match mb.uid_next {
                // UIDs only grow while UIDVALIDITY stays (RFC 3501 2.3.1.1). A next UID at
                // or below what was read means the server reused UIDs (a mailbox restored
                // from a backup under the old UIDVALIDITY): mail there may be new, and
                // recovery would move or delete it as if stored. Read the folder again,
                // guarded like after a UIDVALIDITY change.
                Some(next) if next <= last => {
                    warn!(mailbox = %m.name, folder, checkpoint = last, uid_next = next,
                        "the server's next UID is below the checkpoint under the same UIDVALIDITY: reading the folder again from UID 1 (duplicates are skipped)");
                    (0, Some(next.saturating_sub(1)))
                }
                _ => (last, upto),
            }
        }
        Some(c) => {
            warn!(mailbox = %m.name, folder, old = ?c.uidvalidity, new = uv,
                "UIDVALIDITY changed: reading the folder again from UID 1 (duplicates are skipped)");
            (
                0,
                Some(mb.uid_next.map_or(u32::MAX, |n| n.saturating_sub(1))),
            )
        }
        None => (0, None),
    };
    let rescan = rescan_upto.is_some();
    out.rescanned |= rescan;
    out.last_uid = Some(last);
    let settings = &ctx.settings;
    let write_checkpoint =
        |position: u32, rescan_upto: Option<u32>, held: Vec<HeldPosition>| Checkpoint {
            source: source.clone(),
            uidvalidity: Some(i64::from(uv)),
            position: encode_position(position, rescan_upto),
            held,
        };

    if recover && last > 0 {
        let held = ctx.store.held_uids(&source, i64::from(uv)).await?;
        // A server that refuses the action (the target folder over quota or not
        // creatable) must not stop new mail from coming in: the mail is stored, only
        // its tidying waits. A stalled connection still ends the pass.
        match recover_after(m, server, last, &held, stall).await {
            Err(e @ ImapError::Protocol { .. }) => {
                warn!(mailbox = %m.name, folder, error = %e,
                    "could not apply the after-ingest action to earlier mail; ingesting new mail anyway");
            }
            other => other?,
        }
        if !held.is_empty() {
            retry_held(
                ctx,
                m,
                server,
                folder,
                uv,
                last,
                rescan_upto,
                &held,
                cancel,
                out,
            )
            .await?;
        }
    }

    let nothing_new = mb.exists == 0
        || mb
            .uid_next
            .is_some_and(|next| next <= last.saturating_add(1));
    if nothing_new {
        if rescan {
            let bs = BatchSettings {
                ticket_ref: &settings.ticket_ref,
                now: ctx.clock.now(),
            };
            ctx.store
                .store_batch(
                    &mut [],
                    // Nothing in the folder to read again: the rescan is over.
                    Some(&write_checkpoint(0, None, Vec::new())),
                    &bs,
                )
                .await?;
        }
        return Ok(());
    }

    // Sizes first: an oversized message is refused without downloading it.
    let range = format!("{}:*", last.saturating_add(1));
    let mut sizes = match fetch_sizes(m, &mut server.conn.session, &range, stall).await {
        Ok(sizes) => sizes,
        Err(FetchFailure::Failed(e)) => return Err(e),
        // Without sizes, every message is fetched with its size unknown (as below for
        // one the answer left out): the limit is checked on the bytes that arrive.
        Err(FetchFailure::Unreadable) => {
            warn!(mailbox = %m.name, folder,
                "the server's answer with message sizes could not be read; reconnecting and fetching without sizes");
            reopen(m, server, folder, uv).await?;
            timed(
                stall,
                &m.name,
                "UID SEARCH",
                uid_search(&mut server.conn.session, format!("UID {range}")),
            )
            .await?
            .map_err(|e| proto(m, e))?
            .into_iter()
            .map(|u| (u, 0))
            .collect()
        }
    };
    // `n:*` also names the highest UID when n is above it (RFC 3501 6.4.8).
    sizes.retain(|s| s.0 > last);
    // The largest size a UID was reported with counts.
    sizes.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    sizes.dedup_by_key(|s| s.0);
    if sizes.is_empty() {
        return Ok(());
    }
    // A server that gave no UIDNEXT: the guard covers what is there now.
    if rescan_upto == Some(u32::MAX) {
        rescan_upto = sizes.last().map(|s| s.0);
    }
    let limit = m.max_message_bytes.unwrap_or(settings.max_message_bytes);
    let batch_size = m.batch_size.unwrap_or(settings.batch_size).max(1);
    let max_seen = sizes.last().map_or(last, |s| s.0);
    // The size FETCH may come back short too (see `fetch_and_store`). A UID the folder
    // holds below the highest one answered, but without a size, would be covered by the
    // checkpoint unseen, and later moved or deleted by recovery: it is fetched like the
    // others instead (size unknown), and held if its body does not come either.
    // Every UID from `last + 1` to the highest answered: no gap, nothing to look for
    // (the common case, fresh mail with consecutive UIDs).
    let answered: HashSet<u32> = sizes.iter().map(|s| s.0).collect();
    let complete = answered.len() as u64 == u64::from(max_seen - last);
    let unanswered: Vec<u32> = if complete {
        Vec::new()
    } else {
        timed(
            stall,
            &m.name,
            "UID SEARCH",
            uid_search(
                &mut server.conn.session,
                format!("UID {}:{max_seen}", last.saturating_add(1)),
            ),
        )
        .await?
        .map_err(|e| proto(m, e))?
        .into_iter()
        .filter(|&u| u > last && u <= max_seen && !answered.contains(&u))
        .collect()
    };
    if !unanswered.is_empty() {
        warn!(mailbox = %m.name, folder, messages = unanswered.len(),
            "the server gave no size for some messages; fetching them anyway");
        sizes.extend(unanswered.iter().map(|&u| (u, 0)));
        sizes.sort_unstable_by_key(|s| s.0);
    }
    let mut refused: Vec<u32> = Vec::new();
    let mut accepted: Vec<(u32, u32)> = Vec::new();
    for &(uid, size) in &sizes {
        if u64::from(size) > limit {
            warn!(mailbox = %m.name, folder, uid, size, limit, "message refused: over the size limit; left on the server");
            out.fetched += 1;
            out.failed += 1;
            if out.failures.len() < MAX_REPORTED {
                out.failures.push(Failure {
                    position: format!("{source} uid {uid}"),
                    reason: ItemError::TooLarge {
                        size: u64::from(size),
                        limit,
                    }
                    .to_string(),
                });
            }
            refused.push(uid);
        } else {
            accepted.push((uid, size));
        }
    }

    // Cut batches; each batch's checkpoint covers the refused UIDs up to the next batch,
    // and the batch records them as held, so no after-ingest action ever touches them.
    let mut plan: Vec<Planned> = Vec::new();
    let mut current: Vec<u32> = Vec::new();
    let mut bytes = 0u64;
    let mut largest = 0u64;
    for (i, &(uid, size)) in accepted.iter().enumerate() {
        current.push(uid);
        // Size 0: the server gave none; it may take up to the limit.
        bytes += if size == 0 { limit } else { u64::from(size) };
        // Size 0: the server gave none (see above).
        largest = largest.max(if size == 0 { limit } else { u64::from(size) });
        let next = accepted.get(i + 1).map(|a| a.0);
        if current.len() >= batch_size || bytes >= BATCH_BYTES || next.is_none() {
            let checkpoint = match next {
                Some(n) => sizes
                    .iter()
                    .map(|s| s.0)
                    .filter(|&u| u < n)
                    .max()
                    .unwrap_or(uid),
                None => max_seen,
            };
            let floor = plan.last().map_or(0, |p| p.checkpoint);
            plan.push(Planned {
                uids: std::mem::take(&mut current),
                checkpoint,
                refused: refused
                    .iter()
                    .copied()
                    .filter(|&u| u > floor && u <= checkpoint)
                    .collect(),
                largest: std::mem::take(&mut largest),
            });
            bytes = 0;
        }
    }

    let (committed, result) = if plan.is_empty() {
        // Only refused messages: advance past them.
        let bs = BatchSettings {
            ticket_ref: &settings.ticket_ref,
            now: ctx.clock.now(),
        };
        let held = refused
            .iter()
            .map(|&u| held_position(u, TOO_LARGE))
            .collect();
        ctx.store
            .store_batch(
                &mut [],
                Some(&write_checkpoint(max_seen, rescan_upto, held)),
                &bs,
            )
            .await?;
        out.last_uid = Some(max_seen);
        (Vec::new(), Ok(()))
    } else {
        fetch_and_store(ctx, m, server, folder, uv, rescan_upto, plan, cancel, out).await
    };

    // On an error the connection may be mid-response; what committed is moved by the
    // next connection's recovery pass.
    result?;
    if !refused.is_empty() {
        mark_refused(m, server, &refused, stall).await;
    }
    if !committed.is_empty() {
        out.after_applied += apply_after(m, server, &committed, stall).await?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn fetch_and_store(
    ctx: &IngestContext,
    m: &MailboxConfig,
    server: &mut Server,
    folder: &str,
    uv: u32,
    rescan_upto: Option<u32>,
    plan: Vec<Planned>,
    cancel: &CancellationToken,
    out: &mut FolderSummary,
) -> (Vec<u32>, Result<(), ImapError>) {
    let stall = m.stall_timeout();
    let (tx, mut rx) = mpsc::channel::<RawBatch>(2);
    let producer = async move {
        for Planned {
            uids,
            checkpoint,
            refused,
            largest,
        } in plan
        {
            let wait = body_wait(stall, largest);
            let mut got = Fetched {
                items: Vec::with_capacity(uids.len()),
                ..Fetched::default()
            };
            let mut unfetched =
                fetch_readable(m, server, folder, uv, &uids, wait, cancel, &mut got).await?;
            // A server may answer a UID FETCH with fewer messages than asked and a NO
            // that async-imap does not report (Gmail: "Some messages could not be
            // FETCHed"). Those still there are asked for once more; what still does not
            // come is held (left in the folder, reported) instead of being covered by
            // the checkpoint as if stored. UIDs gone from the folder were expunged by
            // another client: nothing to keep.
            let mut held: Vec<(u32, &'static str)> =
                refused.into_iter().map(|u| (u, TOO_LARGE)).collect();
            let mut missing = got.missing(&uids);
            missing.retain(|u| !unfetched.iter().any(|h| h.0 == *u));
            if !missing.is_empty() {
                let still_there = search_uids(m, &mut server.conn.session, &missing, stall).await?;
                if !still_there.is_empty() {
                    warn!(mailbox = %m.name, folder, messages = still_there.len(),
                        "the server did not return some messages; asking once more");
                    unfetched.extend(
                        fetch_readable(m, server, folder, uv, &still_there, wait, cancel, &mut got)
                            .await?,
                    );
                    for uid in got.missing(&still_there) {
                        if !unfetched.iter().any(|h| h.0 == uid) {
                            held.push((uid, NOT_RETURNED));
                        }
                    }
                }
            }
            held.extend(unfetched);
            if tx
                .send(RawBatch {
                    items: got.items,
                    arrived: got.arrived,
                    checkpoint,
                    held,
                })
                .await
                .is_err()
            {
                break; // the consumer failed; its error is reported
            }
        }
        Ok::<(), ImapError>(())
    };
    let mut committed: Vec<u32> = Vec::new();
    let done = &mut committed;
    // `move`: a failed consumer drops the receiver, which stops the producer.
    let consumer = async move {
        while let Some(batch) = rx.recv().await {
            store_one(ctx, m, folder, uv, rescan_upto, batch, out, done).await?;
        }
        Ok::<(), ImapError>(())
    };
    let (p, c) = tokio::join!(producer, consumer);
    let result = match (c, p) {
        (Err(e), _) | (Ok(()), Err(e)) => Err(e),
        (Ok(()), Ok(())) => Ok(()),
    };
    (committed, result)
}

struct PreparedBatch {
    messages: Vec<NewMessage>,
    parsed: Vec<super::Arrived>,
    uids: Vec<u32>,
    failed: Vec<(u32, String)>,
}

#[allow(clippy::too_many_arguments)]
async fn store_one(
    ctx: &IngestContext,
    m: &MailboxConfig,
    folder: &str,
    uv: u32,
    rescan_upto: Option<u32>,
    batch: RawBatch,
    out: &mut FolderSummary,
    committed: &mut Vec<u32>,
) -> Result<(), ImapError> {
    let source = m.source_key(folder);
    let handled: Vec<u32> = batch.items.iter().map(|i| i.0).collect();
    // The raw mail stays until the batch is stored: if the store refuses the batch,
    // each message is prepared again and stored alone (see below).
    let (prepared, raws) =
        prepare_on_pool(ctx, m, &source, uv, batch.items, batch.arrived.clone()).await?;
    let PreparedBatch {
        mut messages,
        mut parsed,
        mut uids,
        mut failed,
    } = prepared;
    out.fetched += handled.len() as u64;

    // Old mail a rescan reads again: never acknowledged (see `Arrived::reread_old`).
    let mut reread_old: HashSet<u32> = HashSet::new();
    // After a UIDVALIDITY change the content hash guards the store; the Message-ID adds
    // a guard for servers that hand back the same mail with rewritten headers.
    if let Some(upto) = rescan_upto {
        let mut keep = Vec::with_capacity(messages.len());
        let mut forgotten = 0u64;
        for (msg, uid) in messages.iter().zip(uids.iter()) {
            // Only the mail the old UIDVALIDITY covered is rescanned; what arrived since
            // is new, even when the same mail came to another watched folder too. Mail
            // the store deleted since (retention, erasure) stays deleted.
            let known = match &msg.message_id {
                Some(id) if *uid <= upto => {
                    if ctx.store.ticket_of_message_id(id).await?.is_some() {
                        true
                    } else if ctx.store.forgot_message_id(id).await? {
                        forgotten += 1;
                        true
                    } else {
                        false
                    }
                }
                _ => false,
            };
            keep.push(!known);
        }
        let mut it = keep.iter();
        messages.retain(|_| *it.next().unwrap_or(&true));
        let mut it = keep.iter();
        uids.retain(|_| *it.next().unwrap_or(&true));
        if !parsed.is_empty() {
            let mut it = keep.iter();
            parsed.retain(|_| *it.next().unwrap_or(&true));
        }
        out.duplicates += keep.iter().filter(|k| !**k).count() as u64 - forgotten;
        out.forgotten += forgotten;
        let recent = ctx.clock.now() - super::REREAD_ACK_WINDOW;
        reread_old.extend(
            messages
                .iter()
                .zip(&uids)
                .filter(|(msg, uid)| **uid <= upto && msg.received_at < recent)
                .map(|(_, uid)| *uid),
        );
        for (arrived, uid) in parsed.iter_mut().zip(&uids) {
            arrived.reread_old = reread_old.contains(uid);
        }
    }

    let checkpoint = |failed: &[(u32, String)], store_refused: &[u32]| Checkpoint {
        source: source.clone(),
        uidvalidity: Some(i64::from(uv)),
        position: encode_position(batch.checkpoint, rescan_upto),
        held: batch
            .held
            .iter()
            .map(|&(uid, reason)| held_position(uid, reason))
            .chain(failed.iter().map(|f| held_position(f.0, NOT_PREPARED)))
            .chain(store_refused.iter().map(|&u| held_position(u, NOT_STORED)))
            .collect(),
    };
    let whole = commit_part(
        ctx,
        m,
        folder,
        &mut messages,
        &parsed,
        Some(&checkpoint(&failed, &[])),
        out,
    )
    .await;
    let mut store_refused: Vec<u32> = Vec::new();
    match whole {
        Ok(()) => {}
        Err(e) if e.is_unavailable() => return Err(e.into()),
        Err(e) => {
            // The database refused the batch for what one of its messages holds (a
            // value it cannot store): the rest must not wait for it. Each message is
            // prepared again from its raw mail (the failed attempt took its parts) and
            // stored alone; the ones still refused are held on the server.
            warn!(mailbox = %m.name, folder, messages = uids.len(),
                "the store refused a batch; storing its messages one at a time");
            debug!(mailbox = %m.name, folder, error = %e, "store error");
            let mut by_uid: std::collections::HashMap<u32, Vec<u8>> = raws.into_iter().collect();
            for &uid in &uids {
                let Some(raw) = by_uid.remove(&uid) else {
                    continue;
                };
                let arrived: Arrivals = batch
                    .arrived
                    .get(&uid)
                    .map(|at| (uid, *at))
                    .into_iter()
                    .collect();
                let (single, _) =
                    prepare_on_pool(ctx, m, &source, uv, vec![(uid, raw)], arrived).await?;
                let PreparedBatch {
                    mut messages,
                    mut parsed,
                    failed: prepare_failed,
                    ..
                } = single;
                for arrived in &mut parsed {
                    arrived.reread_old = reread_old.contains(&uid);
                }
                failed.extend(prepare_failed);
                if messages.is_empty() {
                    continue;
                }
                match commit_part(ctx, m, folder, &mut messages, &parsed, None, out).await {
                    Ok(()) => {}
                    Err(e) if e.is_unavailable() => return Err(e.into()),
                    Err(e) => {
                        debug!(mailbox = %m.name, folder, uid, error = %e, "store error");
                        store_refused.push(uid);
                    }
                }
            }
            commit_part(
                ctx,
                m,
                folder,
                &mut [],
                &[],
                Some(&checkpoint(&failed, &store_refused)),
                out,
            )
            .await?;
        }
    }
    out.last_uid = Some(batch.checkpoint);
    // Held for what the server sent (not for their size: those were counted when the
    // batches were planned) count as fetched and failed, like those that failed here.
    let unfetched: Vec<(u32, String)> = batch
        .held
        .iter()
        .filter(|(_, reason)| *reason != TOO_LARGE)
        .map(|&(uid, reason)| (uid, reason.to_string()))
        .collect();
    out.fetched += unfetched.len() as u64;
    let reasons = failed
        .iter()
        .map(|(uid, reason)| (*uid, reason.clone()))
        .chain(store_refused.iter().map(|&u| (u, NOT_STORED.to_string())))
        .chain(unfetched);
    for (uid, reason) in reasons {
        out.failed += 1;
        warn!(mailbox = %m.name, folder, uid, %reason, "message could not be stored; left on the server");
        if out.failures.len() < MAX_REPORTED {
            out.failures.push(Failure {
                position: format!("{source} uid {uid}"),
                reason,
            });
        }
    }
    // Messages that were not stored stay on the server (not moved).
    let not_stored: HashSet<u32> = failed
        .iter()
        .map(|f| f.0)
        .chain(store_refused.iter().copied())
        .collect();
    committed.extend(handled.into_iter().filter(|u| !not_stored.contains(u)));
    Ok(())
}

/// [`prepare`] on a blocking thread (it fans out on the rayon pool); gives the raw mail
/// back with the result.
async fn prepare_on_pool(
    ctx: &IngestContext,
    m: &MailboxConfig,
    source: &str,
    uv: u32,
    items: Vec<(u32, Vec<u8>)>,
    arrived: Arrivals,
) -> Result<(PreparedBatch, Vec<(u32, Vec<u8>)>), ImapError> {
    let team = m.team.clone().or_else(|| ctx.settings.team.clone());
    let hook = ctx.hook.clone();
    let now = ctx.clock.now();
    let src = source.to_string();
    let keep_ips = ctx.settings.keep_full_ips;
    let limit = m
        .max_message_bytes
        .unwrap_or(ctx.settings.max_message_bytes);
    let auths = match &hook {
        Some(h) => h.authenticate(&items).await,
        None => Vec::new(),
    };
    tokio::task::spawn_blocking(move || {
        let prepared = prepare(
            &items,
            &arrived,
            &auths,
            &src,
            uv,
            team,
            now,
            keep_ips,
            limit,
            hook.as_deref(),
        );
        (prepared, items)
    })
    .await
    .map_err(|e| ImapError::Worker(e.to_string()))
}

/// Stores messages (with their acknowledgements and, when given, the checkpoint) in one
/// transaction, counts them into `out` and runs the after-store hook.
async fn commit_part(
    ctx: &IngestContext,
    m: &MailboxConfig,
    folder: &str,
    messages: &mut [NewMessage],
    parsed: &[super::Arrived],
    checkpoint: Option<&Checkpoint>,
    out: &mut FolderSummary,
) -> Result<(), qd_store::Error> {
    let sizes: Vec<i64> = messages.iter().map(|m| m.size).collect();
    let defective: Vec<bool> = messages.iter().map(|m| !m.defects.is_empty()).collect();
    let bs = BatchSettings {
        ticket_ref: &ctx.settings.ticket_ref,
        now: ctx.clock.now(),
    };
    let hook = ctx.hook.as_deref();
    let plan = |outcome: &BatchOutcome, stored: &[NewMessage]| {
        hook.map(|h| h.plan_acks(outcome, stored, parsed))
            .unwrap_or_default()
    };
    let acks = hook
        .and_then(|h| h.ack_limit())
        .map(|max_per_day| BatchAcks {
            plan: &plan,
            max_per_day,
        });
    let (outcome, enqueued) = ctx
        .store
        .store_batch_with_acks(messages, checkpoint, &bs, acks.as_ref())
        .await?;
    out.stored += outcome.stored.len() as u64;
    out.duplicates += outcome.duplicates.len() as u64;
    out.forgotten += outcome.forgotten.len() as u64;
    out.tickets += outcome.new_tickets;
    for s in &outcome.stored {
        out.bytes += sizes.get(s.index).copied().unwrap_or(0).max(0) as u64;
        if defective.get(s.index).copied().unwrap_or(false) {
            out.defective += 1;
        }
    }
    if let Some(hook) = &ctx.hook {
        let view = StoredBatch {
            mailbox: &m.name,
            folder,
            team: m.team.as_deref(),
            outcome: &outcome,
            messages,
            arrived: parsed,
            acks: &enqueued,
        };
        if let Err(e) = hook.after_store(view).await {
            warn!(mailbox = %m.name, folder, error = %e, "after-store hook failed (mail is stored)");
        }
    }
    Ok(())
}

/// Parses a batch on the rayon pool. Never fails as a whole: a message mail-parser
/// cannot read is stored with its defects; only a blob that cannot be compressed is
/// reported per message.
#[allow(clippy::too_many_arguments)]
fn prepare(
    items: &[(u32, Vec<u8>)],
    arrived: &Arrivals,
    auths: &[Option<qd_filter::AuthOutcome>],
    source: &str,
    uv: u32,
    team: Option<String>,
    now: chrono::DateTime<chrono::Utc>,
    keep_ips: bool,
    limit: u64,
    hook: Option<&dyn super::AfterStore>,
) -> PreparedBatch {
    type One = Result<(u32, NewMessage, Option<super::Arrived>), (u32, String)>;
    let before = hook.filter(|h| h.runs_before_store());
    let results: Vec<One> = items
        .par_iter()
        .enumerate()
        .map(|(i, (uid, raw))| {
            let uid = *uid;
            // The server's RFC822.SIZE may be approximate, or missing: the bytes decide.
            if raw.len() as u64 > limit {
                let size = raw.len() as u64;
                return Err((uid, ItemError::TooLarge { size, limit }.to_string()));
            }
            // With a step before the store, one parse gives the store its mail and the
            // filter its view.
            let (parsed, view) = match before {
                Some(_) => {
                    let (parsed, view) = qd_mail::parse_with_view(raw);
                    (parsed, Some(view))
                }
                None => (qd_mail::parse(raw), None),
            };
            let blob =
                crate::pipeline::prepare_blob(raw, keep_ips).map_err(|e| (uid, e.to_string()))?;
            let keep = hook.map(|_| super::Arrived::of(raw, &parsed));
            let mut msg = crate::new_message(
                parsed,
                blob,
                Some(source.to_string()),
                Some(format!("{uv}:{uid}")),
                team.clone(),
                now,
            );
            // Live mail arrived when the server received it, whatever its Date says (a
            // forwarded old mail, a wrong clock, spam dated last year): retention and
            // quarantine age it from then. Without an INTERNALDATE, from now.
            msg.received_at = arrived.get(&uid).map_or(now, |at| (*at).min(now));
            // A bounce of our mail threads to the sent copy on its ticket (a DSN rarely
            // carries In-Reply-To).
            // A permanent failure fails the outbox entry in the batch's transaction, so
            // it cannot be lost between the commit and a later step.
            if let Some(b) = keep.as_ref().and_then(|a| a.bounce.as_ref()) {
                if msg.in_reply_to.is_empty() {
                    msg.in_reply_to.push(b.original_message_id.clone());
                }
                if b.is_permanent_failure() {
                    msg.reports_failure = Some(qd_store::ReportedFailure {
                        original_message_id: b.original_message_id.clone(),
                        error: b.summary(),
                    });
                }
            }
            if let (Some(h), Some(v), Some(a)) = (before, view.as_ref(), keep.as_ref()) {
                let auth = auths.get(i).and_then(Option::as_ref);
                h.before_store(v, &a.parsed, auth, &mut msg);
            }
            Ok((uid, msg, keep))
        })
        .collect();
    let mut out = PreparedBatch {
        messages: Vec::with_capacity(results.len()),
        parsed: Vec::new(),
        uids: Vec::with_capacity(results.len()),
        failed: Vec::new(),
    };
    for r in results {
        match r {
            Ok((uid, msg, parsed)) => {
                out.uids.push(uid);
                out.messages.push(msg);
                if let Some(p) = parsed {
                    out.parsed.push(p);
                }
            }
            Err(f) => out.failed.push(f),
        }
    }
    out
}

/// Flags refused messages so recovery leaves them in place. Best effort: a server that
/// refuses keywords still works, refused mail is then moved by a later recovery.
async fn mark_refused(m: &MailboxConfig, server: &mut Server, uids: &[u32], stall: Duration) {
    for set in uid_sets(uids) {
        let r = timed(stall, &m.name, "UID STORE", async {
            let stream = server
                .conn
                .session
                .uid_store(&set, format!("+FLAGS.SILENT ({REFUSED_KEYWORD})"))
                .await?;
            let _: Vec<_> = stream.collect().await;
            Ok::<(), async_imap::error::Error>(())
        })
        .await;
        if !matches!(r, Ok(Ok(()))) {
            debug!(mailbox = %m.name, "could not mark refused messages");
        }
    }
}

/// Once per connection, held mail is tried again: a message refused for its size is
/// taken once the limit has been raised, one the server did not return or the database
/// refused is fetched and stored again (both may have been passing troubles). What is
/// stored now, or was deleted from the folder meanwhile, is released; what fails again
/// stays held.
#[allow(clippy::too_many_arguments)]
async fn retry_held(
    ctx: &IngestContext,
    m: &MailboxConfig,
    server: &mut Server,
    folder: &str,
    uv: u32,
    last: u32,
    rescan_upto: Option<u32>,
    held: &HashSet<i64>,
    cancel: &CancellationToken,
    out: &mut FolderSummary,
) -> Result<(), ImapError> {
    let stall = m.stall_timeout();
    let source = m.source_key(folder);
    let mut uids: Vec<u32> = held.iter().filter_map(|&u| u32::try_from(u).ok()).collect();
    uids.sort_unstable();
    let mut sizes: Vec<(u32, u32)> = Vec::new();
    for set in uid_sets(&uids) {
        match fetch_sizes(m, &mut server.conn.session, &set, stall).await {
            Ok(found) => sizes.extend(found),
            Err(FetchFailure::Failed(e)) => return Err(e),
            // Without sizes a message over the limit would be downloaded whole: held
            // mail waits for a later pass.
            Err(FetchFailure::Unreadable) => {
                warn!(mailbox = %m.name, folder,
                    "the server's answer with the sizes of held mail could not be read; trying it again later");
                return reopen(m, server, folder, uv).await;
            }
        }
    }
    let sized: HashSet<u32> = sizes.iter().map(|s| s.0).collect();
    // A UID missing from the size answer may still be there (the FETCH came back
    // short, as it did when the mail was first held): only the search says it is gone.
    let no_size: Vec<u32> = uids
        .iter()
        .copied()
        .filter(|u| !sized.contains(u))
        .collect();
    let still_there: HashSet<u32> = if no_size.is_empty() {
        HashSet::new()
    } else {
        search_uids(m, &mut server.conn.session, &no_size, stall)
            .await?
            .into_iter()
            .collect()
    };
    let gone: Vec<i64> = no_size
        .iter()
        .filter(|u| !still_there.contains(u))
        .map(|&u| i64::from(u))
        .collect();
    let limit = m
        .max_message_bytes
        .unwrap_or(ctx.settings.max_message_bytes);
    // Those without a size are fetched too; their bytes are checked against the limit.
    let mut wanted: Vec<u32> = sizes
        .iter()
        .filter(|s| u64::from(s.1) <= limit)
        .map(|s| s.0)
        .chain(still_there.iter().copied())
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mut committed: Vec<u32> = Vec::new();
    if !wanted.is_empty() {
        info!(mailbox = %m.name, folder, messages = wanted.len(), "trying held mail again");
        let mut got = Fetched::default();
        let largest = sizes
            .iter()
            .map(|s| u64::from(s.1))
            .filter(|&s| s <= limit)
            .chain(still_there.iter().map(|_| limit))
            .max()
            .unwrap_or(0);
        // What still cannot be read stays held, as it was.
        fetch_readable(
            m,
            server,
            folder,
            uv,
            &wanted,
            body_wait(stall, largest),
            cancel,
            &mut got,
        )
        .await?;
        let batch = RawBatch {
            items: got.items,
            arrived: got.arrived,
            checkpoint: last,
            held: Vec::new(),
        };
        store_one(ctx, m, folder, uv, rescan_upto, batch, out, &mut committed).await?;
    }
    let released: Vec<i64> = gone
        .into_iter()
        .chain(committed.iter().map(|&u| i64::from(u)))
        .collect();
    if !released.is_empty() {
        ctx.store
            .release_held(&source, i64::from(uv), &released)
            .await?;
    }
    if !committed.is_empty() {
        out.after_applied += apply_after(m, server, &committed, stall).await?;
    }
    Ok(())
}

/// Re-applies the after-ingest action to what is at or below the checkpoint and still
/// in the folder: the work a crash between commit and action left undone.
async fn recover_after(
    m: &MailboxConfig,
    server: &mut Server,
    last: u32,
    held: &HashSet<i64>,
    stall: Duration,
) -> Result<(), ImapError> {
    let criterion = match &m.after {
        AfterIngest::Keep => return Ok(()),
        // What is marked \\Deleted was handled (a delete without UID EXPUNGE leaves the
        // flag when others' deleted mail is in the folder, see `delete`).
        AfterIngest::Move(_) | AfterIngest::Delete => " UNDELETED".to_string(),
        AfterIngest::Flag(f) => match f.strip_prefix('\\') {
            Some(system) => format!(" UN{}", system.to_ascii_uppercase()),
            None => format!(" UNKEYWORD {f}"),
        },
    };
    let query = format!("UID 1:{last} UNKEYWORD {REFUSED_KEYWORD}{criterion}");
    let found = timed(
        stall,
        &m.name,
        "UID SEARCH",
        uid_search(&mut server.conn.session, &query),
    )
    .await?
    .map_err(|e| proto(m, e))?;
    // Held UIDs were never stored: they stay, whether or not their keyword was set.
    let uids: Vec<u32> = found
        .into_iter()
        .filter(|u| !held.contains(&i64::from(*u)))
        .collect();
    if !uids.is_empty() {
        let n = apply_after(m, server, &uids, stall).await?;
        info!(mailbox = %m.name, messages = n, "applied the after-ingest action left over from an interrupted run");
    }
    // Stored mail marked \\Deleted but not expunged (a connection lost between the two,
    // or an EXPUNGE held back for someone else's deleted mail): expunged now.
    if matches!(m.after, AfterIngest::Move(_) | AfterIngest::Delete) {
        let marked = timed(
            stall,
            &m.name,
            "UID SEARCH",
            uid_search(&mut server.conn.session, format!("UID 1:{last} DELETED")),
        )
        .await?
        .map_err(|e| proto(m, e))?;
        let mut ours: Vec<u32> = marked
            .into_iter()
            .filter(|u| !held.contains(&i64::from(*u)))
            .collect();
        ours.sort_unstable();
        let uidplus = server.conn.uidplus;
        for set in uid_sets(&ours) {
            expunge(m, &mut server.conn.session, &set, &ours, uidplus, stall).await?;
        }
    }
    Ok(())
}

/// Moves, flags or deletes stored messages. Idempotent: UIDs already gone are ignored
/// by the server.
pub(crate) async fn apply_after(
    m: &MailboxConfig,
    server: &mut Server,
    uids: &[u32],
    stall: Duration,
) -> Result<u64, ImapError> {
    let session = &mut server.conn.session;
    let (mv, uidplus) = (server.conn.mv, server.conn.uidplus);
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    let uids = sorted.as_slice();
    for set in uid_sets(uids) {
        match &m.after {
            AfterIngest::Keep => return Ok(0),
            AfterIngest::Move(_) => {
                let target = server.move_target.clone().unwrap_or_default();
                if mv {
                    timed(stall, &m.name, "UID MOVE", session.uid_mv(&set, &target))
                        .await?
                        .map_err(|e| proto(m, format!("moving to {target}: {e}")))?;
                } else {
                    timed(stall, &m.name, "UID COPY", session.uid_copy(&set, &target))
                        .await?
                        .map_err(|e| proto(m, format!("copying to {target}: {e}")))?;
                    delete(m, session, &set, uids, uidplus, stall).await?;
                }
            }
            AfterIngest::Flag(flag) => {
                timed(stall, &m.name, "UID STORE", async {
                    let stream = session
                        .uid_store(&set, format!("+FLAGS.SILENT ({flag})"))
                        .await?;
                    let _: Vec<_> = stream.collect().await;
                    Ok::<(), async_imap::error::Error>(())
                })
                .await?
                .map_err(|e| proto(m, format!("setting {flag}: {e}")))?;
            }
            AfterIngest::Delete => delete(m, session, &set, uids, uidplus, stall).await?,
        }
    }
    Ok(uids.len() as u64)
}

/// Marks the stored messages of `set` \\Deleted and expunges them. `stored` holds every
/// UID of `set` (and may hold more stored ones).
async fn delete(
    m: &MailboxConfig,
    session: &mut super::conn::Session,
    set: &str,
    stored: &[u32],
    uidplus: bool,
    stall: Duration,
) -> Result<(), ImapError> {
    timed(stall, &m.name, "UID STORE", async {
        let stream = session.uid_store(set, "+FLAGS.SILENT (\\Deleted)").await?;
        let _: Vec<_> = stream.collect().await;
        Ok::<(), async_imap::error::Error>(())
    })
    .await?
    .map_err(|e| proto(m, format!("deleting: {e}")))?;
    expunge(m, session, set, stored, uidplus, stall).await
}

/// Expunges the messages of `set`, all stored and marked \\Deleted; `stored` holds
/// every UID of `set` (and may hold more stored ones), sorted.
async fn expunge(
    m: &MailboxConfig,
    session: &mut super::conn::Session,
    set: &str,
    stored: &[u32],
    uidplus: bool,
    stall: Duration,
) -> Result<(), ImapError> {
    let expunged = timed(stall, &m.name, "EXPUNGE", async {
        if uidplus {
            let stream = session.uid_expunge(set).await?;
            let _: Vec<_> = stream.collect().await;
            return Ok(true);
        }
        // Without UIDPLUS, EXPUNGE removes every message marked \\Deleted, also one a
        // user's client marked that was never stored. Then the flags stay and nothing
        // is expunged: recovery (next connection) expunges the stored ones once the
        // others are gone.
        let deleted = uid_search(session, "DELETED").await?;
        if deleted.iter().any(|u| stored.binary_search(u).is_err()) {
            return Ok(false);
        }
        let stream = session.expunge().await?;
        let _: Vec<_> = stream.collect().await;
        Ok::<bool, async_imap::error::Error>(true)
    })
    .await?
    .map_err(|e| proto(m, format!("expunging: {e}")))?;
    if !expunged {
        warn!(mailbox = %m.name, "not expunging: the folder holds messages marked deleted that were never stored (the server has no UID EXPUNGE)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_compress_ranges() {
        assert_eq!(uid_sets(&[5, 1, 2, 3, 9, 10, 7]), ["1:3,5,7,9:10"]);
        assert!(uid_sets(&[]).is_empty());
        let scattered: Vec<u32> = (0..1200).map(|i| i * 2).collect();
        let sets = uid_sets(&scattered);
        assert_eq!(sets.len(), 3, "500 ranges per command");
    }

    #[test]
    fn folder_names_follow_the_server_delimiter() {
        assert_eq!(
            server_name("quietdesk/processed", Some(".")),
            "quietdesk.processed"
        );
        assert_eq!(
            server_name("quietdesk/processed", Some("/")),
            "quietdesk/processed"
        );
        assert_eq!(server_name("INBOX", Some(".")), "INBOX");
    }

    /// async-imap's parse errors quote the unparsed buffer: during a FETCH, raw mail.
    #[test]
    fn errors_never_carry_the_mail_they_failed_on() {
        let raw = "* 1 FETCH (UID 7 BODY[] {60}\r\nFrom: alice@example.com\r\nSubject: my salary";
        let e = std::io::Error::other(format!("Error(Tag) during parsing of {raw:?}"));
        let text = describe(e);
        assert!(!text.contains("alice"), "{text}");
        assert!(!text.contains("salary"), "{text}");
        assert!(text.contains("could not be parsed"), "{text}");

        let long = "é".repeat(1000);
        let cut = describe(&long);
        assert_eq!(
            cut.chars().count(),
            MAX_REASON + 1,
            "cut on a character boundary"
        );
        assert_eq!(describe("NO [OVERQUOTA] full"), "NO [OVERQUOTA] full");
    }

    #[test]
    fn a_rescan_in_progress_survives_in_the_checkpoint() {
        assert_eq!(encode_position(120, None), "120");
        assert_eq!(encode_position(120, Some(500)), "120/rescan:500");
        assert_eq!(encode_position(500, Some(500)), "500", "the rescan is over");
        assert_eq!(decode_position("120/rescan:500"), (120, Some(500)));
        assert_eq!(decode_position("120"), (120, None));
        assert_eq!(decode_position("500/rescan:500"), (500, None));
        assert_eq!(decode_position("junk"), (0, None));
    }

    #[test]
    fn what_the_server_did_not_return_is_named() {
        let mut got = Fetched::default();
        got.add(1, b"");
        got.add(3, b"");
        assert_eq!(got.missing(&[1, 2, 3, 4]), [2, 4]);
        assert!(got.missing(&[1, 3]).is_empty());
    }
}
