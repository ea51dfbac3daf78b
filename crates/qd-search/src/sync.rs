//! Keeping the index in step with the store, and answering searches with store data.
//!
//! The store's `search_queue` table is the only way work reaches the index. [`Indexer`]
//! pulls entries, applies them as idempotent upserts/deletes, commits the index, and only
//! then deletes the entries — so a crash anywhere re-applies work instead of losing it,
//! and re-applying is harmless. [`reindex`] rebuilds everything from the store.

use std::collections::HashSet;

use qd_store::{IndexRow, Store};
use serde::Serialize;

use crate::{Error, Query, SearchDoc, SearchIndex, SearchWriter};

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Index(#[from] Error),
    #[error(transparent)]
    Store(#[from] qd_store::Error),
}

impl SyncError {
    /// Another writer (another `serve` or `import`) holds the index: not a failure for a
    /// process that only wants to read.
    pub fn is_writer_busy(&self) -> bool {
        matches!(
            self,
            SyncError::Index(Error::Index(tantivy::TantivyError::LockFailure(..)))
        )
    }
}

fn doc(row: IndexRow) -> SearchDoc {
    SearchDoc {
        message_db_id: row.message_db_id,
        ticket_id: row.ticket_id,
        ticket_number: row.ticket_number,
        subject: row.subject,
        body: row.body,
        from: row.from,
        to: row.to,
        status: row.ticket_status,
        date: row.date,
        tags: row.tags,
        has_attachment: row.has_attachment,
    }
}

/// Drains the search queue into the index.
pub struct Indexer {
    store: Store,
    index: SearchIndex,
    /// `None` while a merge swaps it, and after a failed commit until the next pull.
    writer: Option<SearchWriter>,
    heap_bytes: usize,
    threads: usize,
    /// Deletes applied since the index was last merged: erased data must leave the
    /// segment files, not only be tombstoned.
    deletes_since_merge: u64,
    /// Queue entries applied to the writer but not yet committed.
    pending: Vec<i64>,
    /// Highest queue id pulled since the last commit. Reset to 0 on commit: an entry
    /// whose transaction committed late (PostgreSQL ids are not commit-ordered) is then
    /// picked up by the next scan instead of being skipped forever.
    pulled_upto: i64,
    /// When the last merge failed: an idle [`Indexer::commit`] tries again after
    /// [`MERGE_RETRY`].
    merge_failed_at: Option<std::time::Instant>,
}

/// How long an idle indexer waits after a failed merge before it tries again.
pub const MERGE_RETRY: std::time::Duration = std::time::Duration::from_secs(60);

impl Indexer {
    pub fn new(
        store: Store,
        index: SearchIndex,
        heap_bytes: usize,
        threads: usize,
    ) -> Result<Indexer, SyncError> {
        let writer = index.writer(heap_bytes, threads)?;
        // Deleted documents a crash or a failed merge left in the segment files are
        // merged away at the next commit that finds the queue empty (an idle one too).
        let deletes_since_merge = index.deleted_docs()?;
        Ok(Indexer {
            store,
            index,
            writer: Some(writer),
            heap_bytes,
            threads,
            deletes_since_merge,
            pending: Vec::new(),
            pulled_upto: 0,
            merge_failed_at: None,
        })
    }

    /// Entries applied but not yet committed.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The writer, reopened when a failed commit dropped it.
    fn writer(&mut self) -> Result<&mut SearchWriter, SyncError> {
        if self.writer.is_none() {
            self.writer = Some(self.index.writer(self.heap_bytes, self.threads)?);
        }
        self.writer
            .as_mut()
            .ok_or_else(|| SyncError::Index(Error::Closed))
    }

    /// Applies up to `limit` queue entries to the writer; returns how many.
    pub async fn pull(&mut self, limit: u64) -> Result<usize, SyncError> {
        let items = self
            .store
            .search_queue_batch(self.pulled_upto, limit)
            .await?;
        if items.is_empty() {
            return Ok(0);
        }
        let upserts: Vec<i64> = items
            .iter()
            .filter(|q| q.op == "upsert" || q.op == "redact")
            .map(|q| q.message_db_id)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let rows = self.store.index_rows(&upserts).await?;
        let found: HashSet<i64> = rows.iter().map(|r| r.message_db_id).collect();
        let writer = self.writer()?;
        for row in rows {
            writer.upsert(&doc(row))?;
        }
        // A redaction replaces a document whose old version named an erased person: it
        // counts as a delete, so its segment is rewritten.
        let mut deletes = items.iter().filter(|q| q.op == "redact").count() as u64;
        for q in &items {
            // A message deleted since it was queued must not linger in the index.
            if q.op == "delete" || !found.contains(&q.message_db_id) {
                writer.delete(q.message_db_id)?;
                deletes += 1;
            }
        }
        self.deletes_since_merge += deletes;
        self.pulled_upto = items.last().map(|q| q.id).unwrap_or(self.pulled_upto);
        self.pending.extend(items.iter().map(|q| q.id));
        Ok(items.len())
    }

    /// Commits the index, then forgets the committed queue entries.
    ///
    /// With nothing pending, it still merges away deleted documents an earlier merge
    /// failed to (a full disk), once the queue is empty, at most every
    /// [`MERGE_RETRY`]: erased text must not stay in the files until new mail comes.
    pub async fn commit(&mut self) -> Result<(), SyncError> {
        if self.pending.is_empty() {
            let retry_due = self
                .merge_failed_at
                .is_none_or(|at| at.elapsed() >= MERGE_RETRY);
            if self.deletes_since_merge > 0
                && retry_due
                && self.store.search_queue_batch(0, 1).await?.is_empty()
            {
                self.merge_away_deleted()?;
            }
            return Ok(());
        }
        if let Err(e) = commit_blocking(self.writer()?) {
            // A failed commit (a full disk) leaves tantivy's writer short of the indexing
            // workers whose segment failed, and the documents pulled since the last
            // commit are not in the index. Drop the writer and pull those queue entries
            // again into a fresh one: left as they were, the next commit deleted their
            // queue rows without indexing them.
            self.writer = None;
            self.pending.clear();
            self.pulled_upto = 0;
            return Err(e.into());
        }
        self.index.reload()?;
        self.store.search_queue_delete(&self.pending).await?;
        self.pending.clear();
        self.pulled_upto = 0;
        // Merge once the queue is empty, not per commit: a retention run deletes in many
        // batches, and one merge at the end rewrites the segments once.
        if self.deletes_since_merge > 0 && self.store.search_queue_batch(0, 1).await?.is_empty() {
            self.merge_away_deleted()?;
        }
        Ok(())
    }

    /// Rewrites the segments that hold deleted documents, so their terms and stored
    /// fields leave the files on disk; the writer is reopened afterwards.
    pub fn merge_away_deleted(&mut self) -> Result<(), SyncError> {
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| self.merge_blocking())
            }
            _ => self.merge_blocking(),
        }
    }

    fn merge_blocking(&mut self) -> Result<(), SyncError> {
        let Some(writer) = self.writer.take() else {
            return Err(SyncError::Index(Error::Closed));
        };
        let merged = writer.merge_away_deleted();
        // Reopen even when the merge failed, so the indexer keeps working.
        self.writer = Some(self.index.writer(self.heap_bytes, self.threads)?);
        if merged.is_err() {
            self.merge_failed_at = Some(std::time::Instant::now());
        }
        merged?;
        self.deletes_since_merge = 0;
        self.merge_failed_at = None;
        Ok(())
    }

    /// Deletes these messages' documents now, commits and merges them out of the
    /// segment files, without waiting for the queue. For a retention run, which knows
    /// what it will delete before the store does it: the index work then runs beside
    /// the store's on another core. The queued deletes that follow find nothing left to
    /// delete. Blocking: call it on a blocking thread.
    pub fn delete_now(&mut self, message_db_ids: &[i64]) -> Result<(), SyncError> {
        if message_db_ids.is_empty() {
            return Ok(());
        }
        let writer = self.writer()?;
        for id in message_db_ids {
            writer.delete(*id)?;
        }
        writer.commit()?;
        self.index.reload()?;
        self.merge_blocking()
    }

    /// Pulls until the queue is empty, committing every `commit_every` entries and at
    /// the end; returns the number of entries applied.
    pub async fn drain(&mut self, commit_every: usize) -> Result<u64, SyncError> {
        let mut total = 0u64;
        loop {
            let n = self.pull(2_000).await?;
            total += n as u64;
            if n == 0 {
                break;
            }
            if self.pending.len() >= commit_every {
                self.commit().await?;
            }
        }
        self.commit().await?;
        Ok(total)
    }
}

/// A tantivy commit fsyncs segment files: keep it off the async worker threads when
/// running on a multi-threaded runtime.
fn commit_blocking(writer: &mut SearchWriter) -> Result<(), Error> {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| writer.commit())
        }
        _ => writer.commit(),
    }
}

/// Rebuilds the index from the store: every message is re-read and re-added, and the
/// queue entries committed before the rebuild began are dropped (see
/// [`Store::search_queue_ids`]). Returns the number of documents.
pub async fn reindex(
    store: &Store,
    index: &SearchIndex,
    heap_bytes: usize,
    threads: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<u64, SyncError> {
    let queued = store.search_queue_ids().await?;
    let mut writer = index.writer(heap_bytes, threads)?;
    writer.delete_all()?;
    let mut after = 0i64;
    let mut total = 0u64;
    loop {
        let ids = store.message_ids_after(after, 2_000).await?;
        let Some(&last) = ids.last() else { break };
        after = last;
        for row in store.index_rows(&ids).await? {
            writer.add(&doc(row))?;
            total += 1;
        }
        progress(total);
    }
    commit_blocking(&mut writer)?;
    drop(writer);
    index.reload()?;
    store.search_queue_delete(&queued).await?;
    Ok(total)
}

/// One search result as staff see it.
#[derive(Debug, Clone, Serialize)]
pub struct Hit {
    pub ticket: i64,
    pub message_db_id: i64,
    pub message_id: Option<String>,
    pub subject: String,
    /// HTML: matches in `<b>`, everything else escaped.
    pub snippet: String,
    pub score: f32,
}

/// Runs a query and dresses the hits with subject and snippet from the store (the index
/// stores no text). Hits whose message vanished meanwhile are dropped.
pub async fn search(
    store: &Store,
    index: &SearchIndex,
    query: &Query,
    limit: usize,
) -> Result<Vec<Hit>, SyncError> {
    let raw = index.search(query, limit)?;
    let ids: Vec<i64> = raw.iter().map(|h| h.message_db_id).collect();
    // Texts come back in the order of `ids`, minus messages deleted meanwhile.
    let mut texts = store.message_texts(&ids).await?.into_iter().peekable();
    let mut hits = Vec::with_capacity(raw.len());
    for h in raw {
        let Some(t) = texts.next_if(|t| t.message_db_id == h.message_db_id) else {
            continue;
        };
        hits.push(Hit {
            ticket: t.ticket_number,
            message_db_id: h.message_db_id,
            message_id: t.message_id,
            snippet: index.snippet(query, &t.body, 200),
            subject: t.subject,
            score: h.score,
        });
    }
    Ok(hits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_second_writer_is_reported_busy_not_failed() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("q.db").display());
        let store = Store::connect(&url).await.unwrap();
        let index = SearchIndex::open_or_create(&dir.path().join("index")).unwrap();
        let _first = Indexer::new(store.clone(), index.clone(), 32 << 20, 1).unwrap();
        let Err(second) = Indexer::new(store, index, 32 << 20, 1) else {
            panic!("two writers on one index");
        };
        assert!(second.is_writer_busy(), "{second}");
    }

    fn message(n: usize) -> qd_store::NewMessage {
        let raw = format!("Message-ID: <m{n}@x>\r\nFrom: a@example.com\r\n\r\nquasar {n}\r\n");
        qd_store::NewMessage {
            direction: qd_core::Direction::In,
            message_id: Some(format!("m{n}@x")),
            in_reply_to: vec![],
            references: vec![],
            from_addr: Some("a@example.com".into()),
            from_name: None,
            to: vec![],
            cc: vec![],
            date: None,
            received_at: chrono::Utc::now(),
            subject: format!("question {n}"),
            body_text: format!("the quasar report {n}"),
            body_html: None,
            size: raw.len() as i64,
            content_hash: format!("hash-{n}"),
            attachments: vec![],
            defects: vec![],
            source: None,
            source_position: None,
            blob: Some(qd_store::PreparedBlob::prepare(raw.as_bytes()).unwrap()),
            team: None,
            verdict: None,
            reports_failure: None,
        }
    }

    /// A SQLite store in a temporary directory holding messages `0..n`.
    async fn stored(n: usize) -> (tempfile::TempDir, Store, qd_store::BatchOutcome) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("q.db").display());
        let store = Store::connect(&url).await.unwrap();
        let fmt = qd_core::TicketRefFormat::new("[#QD-{n}]").unwrap();
        let settings = qd_store::BatchSettings {
            ticket_ref: &fmt,
            now: chrono::Utc::now(),
        };
        let mut batch: Vec<_> = (0..n).map(message).collect();
        let outcome = store
            .store_batch(&mut batch, None, &settings)
            .await
            .unwrap();
        (dir, store, outcome)
    }

    /// A commit that fails (here: the index directory is gone, as on a lost or full
    /// disk) loses nothing: once the disk is back, the same queue entries are indexed.
    /// Before, the next commit deleted their queue rows without indexing them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_commit_indexes_its_entries_on_the_next_one() {
        let (dir, store, _) = stored(3).await;
        let path = dir.path().join("index");
        let index = SearchIndex::open_or_create(&path).unwrap();
        let mut idx = Indexer::new(store.clone(), index.clone(), 32 << 20, 1).unwrap();
        assert_eq!(idx.pull(100).await.unwrap(), 3);

        // The directory goes away; a file stands where it was, so no write can succeed
        // (the tests run as root, whom permissions do not stop).
        let away = dir.path().join("index.away");
        std::fs::rename(&path, &away).unwrap();
        std::fs::write(&path, b"not a directory").unwrap();
        assert!(
            idx.commit().await.is_err(),
            "a commit into a file succeeded"
        );
        std::fs::remove_file(&path).unwrap();
        std::fs::rename(&away, &path).unwrap();

        idx.pull(100).await.unwrap();
        idx.commit().await.unwrap();
        assert!(store.search_queue_batch(0, 10).await.unwrap().is_empty());
        let query = Query::parse("quasar").unwrap();
        let hits = search(&store, &index, &query, 10).await.unwrap();
        assert_eq!(hits.len(), 3, "{hits:?}");
    }

    /// Deleted documents left in the segment files (a merge failed, or the process
    /// stopped before it) are merged away by an idle indexer, without waiting for new
    /// mail to give it a commit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_idle_indexer_merges_away_what_a_failed_merge_left() {
        let (dir, store, outcome) = stored(2).await;
        let index = SearchIndex::open_or_create(&dir.path().join("index")).unwrap();
        let mut idx = Indexer::new(store.clone(), index.clone(), 32 << 20, 1).unwrap();
        idx.pull(100).await.unwrap();
        idx.commit().await.unwrap();
        drop(idx);
        // A delete committed without its merge: a tombstone over text still on disk.
        let mut w = index.writer(32 << 20, 1).unwrap();
        w.delete(outcome.stored[0].message_db_id).unwrap();
        w.commit().unwrap();
        drop(w);
        assert_eq!(index.deleted_docs().unwrap(), 1);

        let mut idx = Indexer::new(store.clone(), index.clone(), 32 << 20, 1).unwrap();
        assert_eq!(idx.pull(100).await.unwrap(), 0);
        idx.commit().await.unwrap();
        assert_eq!(index.deleted_docs().unwrap(), 0);
    }
}
