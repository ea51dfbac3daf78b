//! The import pipeline: read -> parse (in parallel) -> store (one transaction per batch).
//!
//! A reader thread walks the source and parses each batch on the rayon pool (parsing,
//! hashing and compressing are the CPU-heavy steps); the async side stores batches in
//! order, each with the checkpoint of its last item, so an interrupted import resumes
//! where the last committed batch ended and never stores a message twice. The search
//! index is not touched here: stored messages are queued in `search_queue` and the
//! indexer follows.

use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Utc};
use qd_core::{Clock, Direction, TicketRefFormat};
use qd_mail::{looks_like_mail, parse, strip_mbox_envelope, ParsedMail};
use qd_store::{BatchSettings, Checkpoint, NewAttachment, NewMessage, PreparedBlob, Store};
use rayon::prelude::*;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::source::{self, ItemError, Position, SourceKind};
use crate::Error;

/// Settings of one import, validated by the caller.
#[derive(Debug, Clone)]
pub struct ImportSettings {
    /// Messages above this size are refused (reported, not stored).
    pub max_message_bytes: u64,
    /// Messages per transaction.
    pub batch_size: usize,
    pub ticket_ref: TicketRefFormat,
    /// Team new tickets are routed to.
    pub team: Option<String>,
    /// Keep third parties' IPs whole in the stored raw mail (default: truncated).
    pub keep_full_ips: bool,
}

/// One item that could not be imported, with the reason.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Failure {
    pub position: String,
    pub reason: String,
}

/// What an import did. `failures` lists at most [`MAX_REPORTED`] items; `failed` counts
/// them all.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportSummary {
    pub source: String,
    pub kind: String,
    /// Messages stored by this run.
    pub imported: u64,
    /// Messages already in the store (same content hash).
    pub duplicates: u64,
    /// Messages the store deleted before (retention or erasure), not taken back.
    pub forgotten: u64,
    /// Items refused (too large, unreadable).
    pub failed: u64,
    /// Files in a directory that are not mail (no header block).
    pub skipped: u64,
    /// New tickets opened by this run.
    pub tickets: u64,
    /// Stored messages that carry at least one parse defect (a stripped mbox envelope
    /// line does not count).
    pub defective: u64,
    /// Raw bytes of the stored messages.
    pub bytes: u64,
    /// The checkpoint this run resumed after, if any.
    pub resumed_after: Option<String>,
    /// Wall time of reading and storing (the `import` command widens it to include the
    /// search index catching up, and reports the store's share as `stored_seconds`).
    pub seconds: f64,
    /// `imported / seconds`.
    pub messages_per_sec: f64,
    pub failures: Vec<Failure>,
}

pub const MAX_REPORTED: usize = 100;

/// Recorded with the message but not a fault: mbox files and many archives carry an
/// envelope line before the headers.
const ENVELOPE_NOTE: &str = "mbox_envelope_stripped";

/// Progress callbacks (a terminal progress bar, or nothing).
pub trait Progress: Send + Sync {
    /// Total items, when known up front.
    fn set_total(&self, _total: u64) {}
    /// `n` more items handled.
    fn advance(&self, _n: u64) {}
}

/// Reports nothing.
pub struct NoProgress;
impl Progress for NoProgress {}

enum Prepared {
    Message(Box<NewMessage>),
    Failed(Failure),
    Skipped,
}

struct ParsedBatch {
    items: Vec<Prepared>,
    last: Position,
}

/// The checkpoint key of a path: one per canonical source path.
pub fn source_key(path: &Path) -> String {
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    format!("import:{}", canonical.display())
}

/// Imports everything under `path` that the checkpoint says is new.
pub async fn import_path(
    store: &Store,
    path: &Path,
    settings: &ImportSettings,
    clock: &dyn Clock,
    progress: &dyn Progress,
) -> Result<ImportSummary, Error> {
    let started = Instant::now();
    let kind = source::detect(path)?;
    let key = source_key(path);
    let mut after = match store.checkpoint(&key).await? {
        Some(cp) => Position::decode(&cp.position),
        None => None,
    };
    if let (SourceKind::Mbox, Some(Position::Offset(offset))) = (&kind, &after) {
        if !source::mbox_resumes_at(path, *offset)? {
            tracing::warn!(
                offset,
                "the mbox changed since the last import (no message starts where it \
                 ended): reading it from the start; stored messages count as duplicates"
            );
            after = None;
        }
    }
    let mut summary = ImportSummary {
        source: key.clone(),
        kind: format!("{kind:?}").to_lowercase(),
        resumed_after: after.as_ref().map(Position::encode),
        ..ImportSummary::default()
    };

    let (tx, mut rx) = mpsc::channel::<Result<ParsedBatch, Error>>(2);
    let now = clock.now();
    let job = ReadJob {
        path: path.to_path_buf(),
        source: key.clone(),
        kind: kind.clone(),
        after,
        settings: settings.clone(),
        now,
    };
    let (total_tx, total_rx) = std::sync::mpsc::channel::<u64>();
    let reader = std::thread::Builder::new()
        .name("qd-import-reader".into())
        .spawn(move || {
            let result = read_source(&job, &tx, &total_tx);
            if let Err(e) = result {
                // The receiver may be gone already (the writer failed); then the error
                // has nowhere to go and the writer's own error is reported.
                let _ = tx.blocking_send(Err(e));
            }
        })
        .map_err(|e| Error::Thread(e.to_string()))?;

    let batch_settings = BatchSettings {
        ticket_ref: &settings.ticket_ref,
        now,
    };
    let mut total_known = false;
    while let Some(batch) = rx.recv().await {
        if !total_known {
            if let Ok(total) = total_rx.try_recv() {
                progress.set_total(total);
                total_known = true;
            }
        }
        let batch = batch?;
        let handled = batch.items.len() as u64;
        let mut messages = Vec::with_capacity(batch.items.len());
        for item in batch.items {
            match item {
                Prepared::Message(m) => messages.push(*m),
                Prepared::Failed(f) => {
                    summary.failed += 1;
                    if summary.failures.len() < MAX_REPORTED {
                        summary.failures.push(f);
                    }
                }
                Prepared::Skipped => summary.skipped += 1,
            }
        }
        let checkpoint = Checkpoint {
            source: key.clone(),
            uidvalidity: None,
            position: batch.last.encode(),
            held: Vec::new(),
        };
        let outcome = store
            .store_batch(&mut messages, Some(&checkpoint), &batch_settings)
            .await?;
        summary.duplicates += outcome.duplicates.len() as u64;
        summary.forgotten += outcome.forgotten.len() as u64;
        summary.tickets += outcome.new_tickets;
        for s in &outcome.stored {
            let m = &messages[s.index];
            summary.imported += 1;
            summary.bytes += m.size as u64;
            if m.defects.iter().any(|d| d != ENVELOPE_NOTE) {
                summary.defective += 1;
            }
        }
        progress.advance(handled);
    }
    reader
        .join()
        .map_err(|_| Error::Thread("the import reader panicked".into()))?;
    // A file tree's checkpoint (the last relative path, in name order) only serves to
    // resume an interrupted import: name order is not arrival order (a mail client moves
    // a message from `new/` to `cur/`, a new file may sort anywhere). Once the whole tree
    // was read, the next import reads it all again and recognises what is stored by its
    // content. An mbox grows at its end, so its offset stays: the next import reads only
    // what was appended (`import --restart` reads it from the start).
    if !matches!(kind, SourceKind::Mbox) {
        store.delete_checkpoint(&key).await?;
    }
    summary.seconds = started.elapsed().as_secs_f64();
    summary.messages_per_sec = if summary.seconds > 0.0 {
        summary.imported as f64 / summary.seconds
    } else {
        0.0
    };
    Ok(summary)
}

/// What the reader thread reads, and how.
struct ReadJob {
    path: PathBuf,
    /// The checkpoint key, recorded as each message's source.
    source: String,
    kind: SourceKind,
    after: Option<Position>,
    settings: ImportSettings,
    now: DateTime<Utc>,
}

fn read_source(
    job: &ReadJob,
    tx: &mpsc::Sender<Result<ParsedBatch, Error>>,
    total_tx: &std::sync::mpsc::Sender<u64>,
) -> Result<(), Error> {
    let ReadJob {
        path,
        source: source_name,
        kind,
        after,
        settings,
        now,
    } = job;
    let (path, now) = (path.as_path(), *now);
    let limit = settings.max_message_bytes;
    let send = |batch: ParsedBatch| tx.blocking_send(Ok(batch)).is_ok();
    match kind {
        SourceKind::Maildir | SourceKind::Directory | SourceKind::SingleMessage => {
            let files: Vec<(String, PathBuf)> = if *kind == SourceKind::SingleMessage {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let pos = Position::Path(name.clone());
                if after.as_ref().is_some_and(|a| pos <= *a) {
                    Vec::new()
                } else {
                    vec![(name, path.to_path_buf())]
                }
            } else {
                source::list_files(path, kind, after.as_ref())?
            };
            let _ = total_tx.send(files.len() as u64);
            let is_dir = *kind != SourceKind::SingleMessage;
            // A Maildir's files are mail by definition: one that does not look like it
            // (a blank first line, a `>From ` line) is kept raw with a defect, not skipped.
            let sniff = *kind == SourceKind::Directory;
            for chunk in chunks_by_size(&files, settings.batch_size.max(1), BATCH_BYTES) {
                let items: Vec<Prepared> = chunk
                    .par_iter()
                    .map(|(rel, full)| {
                        let position = Position::Path(rel.clone());
                        match source::read_file(full, limit) {
                            Ok(raw) => {
                                if sniff && !looks_like_mail(&raw) {
                                    Prepared::Skipped
                                } else if is_dir && source::is_multi_message_mbox(&raw) {
                                    // Taken as one message, all but the first would be
                                    // lost in its body.
                                    failed(&position, &ItemError::MboxInDirectory)
                                } else {
                                    prepare(&raw, &position, source_name, settings, now)
                                }
                            }
                            Err(e) => failed(&position, &e),
                        }
                    })
                    .collect();
                let last = match chunk.last() {
                    Some((rel, _)) => Position::Path(rel.clone()),
                    None => continue,
                };
                if !send(ParsedBatch { items, last }) {
                    return Ok(());
                }
            }
        }
        SourceKind::Mbox => {
            // Messages over the limit are measured, not held.
            let mut reader = source::open_mbox(path, after.as_ref())?.with_limit(limit);
            loop {
                let mut raws: Vec<(Position, Result<Vec<u8>, ItemError>)> = Vec::new();
                let mut batch_bytes = 0u64;
                for next in reader.by_ref() {
                    match next {
                        Ok(m) => {
                            let pos = Position::Offset(m.offset);
                            let raw = if m.over_limit() || m.size > limit {
                                Err(ItemError::TooLarge {
                                    size: m.size,
                                    limit,
                                })
                            } else {
                                batch_bytes += m.size;
                                Ok(m.raw)
                            };
                            raws.push((pos, raw));
                        }
                        Err(e) => {
                            return Err(Error::Source(source::SourceError::Io {
                                path: path.to_path_buf(),
                                source: e,
                            }))
                        }
                    }
                    // A batch is also cut by bytes: 2,000 large messages would otherwise
                    // be held at once, raw and parsed.
                    if raws.len() >= settings.batch_size.max(1) || batch_bytes >= BATCH_BYTES {
                        break;
                    }
                }
                if raws.is_empty() {
                    break;
                }
                // An mbox checkpoint is where the next message starts (its `From ` line),
                // which is where a resumed import seeks to.
                let last = Position::Offset(reader.position());
                let items: Vec<Prepared> = raws
                    .par_iter()
                    .map(|(pos, raw)| match raw {
                        Ok(raw) => prepare(raw, pos, source_name, settings, now),
                        Err(e) => failed(pos, e),
                    })
                    .collect();
                if !send(ParsedBatch { items, last }) {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}

fn failed(position: &Position, e: &ItemError) -> Prepared {
    Prepared::Failed(Failure {
        position: position.encode(),
        reason: e.to_string(),
    })
}

/// Raw bytes read into one batch at most (besides the message count): with files up to
/// the message size limit, 2,000 of them could otherwise be held at once.
const BATCH_BYTES: u64 = 64 * 1024 * 1024;

/// Consecutive runs of `files` of at most `max_count` files and about `max_bytes` bytes
/// (a file larger than that is a run of its own). Sizes come from the file system; a
/// file that cannot be measured counts as empty here and fails when read.
fn chunks_by_size(
    files: &[(String, PathBuf)],
    max_count: usize,
    max_bytes: u64,
) -> Vec<&[(String, PathBuf)]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0usize, 0u64);
    for (i, (_, path)) in files.iter().enumerate() {
        let size = std::fs::metadata(path).map_or(0, |m| m.len());
        if i > start && (i - start >= max_count || bytes + size > max_bytes) {
            out.push(&files[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < files.len() {
        out.push(&files[start..]);
    }
    out
}

/// Parses one raw message into a storable one. Never fails: a message mail-parser
/// cannot read is stored with its defects and its raw bytes.
fn prepare(
    raw: &[u8],
    position: &Position,
    source: &str,
    settings: &ImportSettings,
    now: DateTime<Utc>,
) -> Prepared {
    let (body, _) = strip_mbox_envelope(raw);
    let parsed = parse(raw);
    let blob = match prepare_blob(body, settings.keep_full_ips) {
        Ok(b) => b,
        Err(e) => {
            return Prepared::Failed(Failure {
                position: position.encode(),
                reason: e.to_string(),
            })
        }
    };
    Prepared::Message(Box::new(new_message(
        parsed,
        blob,
        Some(source.to_string()),
        Some(position.encode()),
        settings.team.clone(),
        now,
    )))
}

/// Hashes and compresses the raw mail for the store, with third parties' IP addresses in
/// its trace headers truncated unless `keep_full_ips`.
pub fn prepare_blob(raw: &[u8], keep_full_ips: bool) -> Result<PreparedBlob, qd_store::BlobError> {
    if keep_full_ips {
        PreparedBlob::prepare(raw)
    } else {
        PreparedBlob::prepare(&qd_mail::anonymise_trace_ips(raw))
    }
}

/// Turns a parsed inbound mail into the store's input. The receive time of imported
/// mail is its Date (clamped to now), so retention ages old mail from when it was sent.
pub fn new_message(
    parsed: ParsedMail,
    blob: PreparedBlob,
    source: Option<String>,
    source_position: Option<String>,
    team: Option<String>,
    now: DateTime<Utc>,
) -> NewMessage {
    let display = |a: &qd_mail::Address| match &a.name {
        Some(n) => format!("{n} <{}>", a.addr),
        None => a.addr.clone(),
    };
    let received_at = parsed.date.map(|d| d.min(now)).unwrap_or(now);
    NewMessage {
        direction: Direction::In,
        message_id: parsed.message_id,
        in_reply_to: parsed.in_reply_to,
        references: parsed.references,
        from_addr: parsed.from.as_ref().map(|a| a.addr.clone()),
        from_name: parsed.from.and_then(|a| a.name),
        to: parsed.to.iter().map(display).collect(),
        cc: parsed.cc.iter().map(display).collect(),
        date: parsed.date,
        received_at,
        subject: parsed.subject.unwrap_or_default(),
        body_text: parsed.text,
        body_html: parsed.html,
        size: parsed.size as i64,
        content_hash: parsed.content_hash,
        attachments: parsed
            .attachments
            .into_iter()
            .map(|a| NewAttachment {
                filename: a.filename,
                content_type: a.content_type,
                size: a.size as i64,
                digest: a.sha256,
                quarantined: false,
            })
            .collect(),
        defects: parsed
            .defects
            .iter()
            .map(|d| d.as_str().to_string())
            .collect(),
        source,
        source_position,
        blob: Some(blob),
        team,
        verdict: None,
        reports_failure: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_of_files_are_cut_by_count_and_by_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<(String, PathBuf)> = [10u64, 10, 50, 10, 200, 10]
            .iter()
            .enumerate()
            .map(|(i, &len)| {
                let path = dir.path().join(i.to_string());
                std::fs::write(&path, vec![b'a'; len as usize]).unwrap();
                (i.to_string(), path)
            })
            .collect();
        let lens =
            |chunks: Vec<&[(String, PathBuf)]>| chunks.iter().map(|c| c.len()).collect::<Vec<_>>();
        assert_eq!(lens(chunks_by_size(&files, 100, 70)), [3, 1, 1, 1]);
        assert_eq!(lens(chunks_by_size(&files, 2, 1_000)), [2, 2, 2]);
        assert_eq!(lens(chunks_by_size(&files, 100, 1_000)), [6]);
        assert!(chunks_by_size(&[], 10, 10).is_empty());
    }
}
