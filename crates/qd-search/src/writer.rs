use std::fmt;

use tantivy::indexer::NoMergePolicy;
use tantivy::{IndexWriter, TantivyDocument, Term};

use crate::schema::to_document;
use crate::{Error, SearchDoc, SearchIndex};

/// Adds, replaces and deletes documents. Changes become durable and visible at
/// [`commit`](SearchWriter::commit).
pub struct SearchWriter {
    index: SearchIndex,
    writer: IndexWriter<TantivyDocument>,
    heap_per_thread: usize,
}

impl fmt::Debug for SearchWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SearchWriter").finish_non_exhaustive()
    }
}

impl SearchWriter {
    pub(crate) fn new(
        index: SearchIndex,
        heap_bytes: usize,
        threads: usize,
    ) -> Result<SearchWriter, Error> {
        // Tantivy divides the heap by the thread count without checking for zero.
        let threads = threads.max(1);
        let writer = index.index.writer_with_num_threads(threads, heap_bytes)?;
        Ok(SearchWriter {
            index,
            writer,
            heap_per_thread: heap_bytes / threads,
        })
    }

    /// Adds a document the caller knows is not in the index yet.
    pub fn add(&mut self, doc: &SearchDoc) -> Result<(), Error> {
        self.writer
            .add_document(to_document(&self.index.fields, doc))?;
        Ok(())
    }

    /// Replaces the document with the same `message_db_id`, or adds it: re-indexing a
    /// message any number of times leaves one document.
    pub fn upsert(&mut self, doc: &SearchDoc) -> Result<(), Error> {
        // A delete only hits documents added before it, so the add below survives it,
        // within one commit too.
        self.delete(doc.message_db_id)?;
        self.add(doc)
    }

    /// Deletes the message's document. The document stays on disk, marked deleted, until a
    /// merge rewrites its segment: see [`merge_away_deleted`](SearchWriter::merge_away_deleted).
    pub fn delete(&mut self, message_db_id: i64) -> Result<(), Error> {
        self.writer.delete_term(Term::from_field_i64(
            self.index.fields.message_db_id,
            message_db_id,
        ));
        Ok(())
    }

    /// Deletes every document, to rebuild the index from the store.
    pub fn delete_all(&mut self) -> Result<(), Error> {
        self.writer.delete_all_documents()?;
        Ok(())
    }

    /// Makes the changes durable and visible to searches.
    pub fn commit(&mut self) -> Result<(), Error> {
        self.writer.commit()?;
        self.index.reload()
    }

    /// Commits, then rewrites all segments into one so that no deleted document is left in
    /// any file, and removes the old files. Erasure has to be physical: a deleted document
    /// is only a tombstone bit until its segment is merged. Afterwards
    /// [`SearchIndex::deleted_docs`] is 0.
    ///
    /// Files of old segments stay until no searcher uses them; searches running right now
    /// can delay their removal until the next commit.
    pub fn merge_away_deleted(mut self) -> Result<(), Error> {
        self.commit()?;
        let SearchWriter {
            index,
            writer,
            heap_per_thread,
            ..
        } = self;
        // A merge cannot include segments that a background merge of the merge policy
        // holds, so let those finish (this drops the writer and its lock) and merge with a
        // fresh writer that starts none.
        writer.wait_merging_threads()?;
        let mut writer: IndexWriter<TantivyDocument> =
            index.index.writer_with_num_threads(1, heap_per_thread)?;
        writer.set_merge_policy(Box::new(NoMergePolicy));

        // Only ids and counts outlive this block: a live `SegmentMeta` keeps its segment's
        // files from the garbage collector.
        let (groups, segments, deleted) = {
            let metas = index.index.searchable_segment_metas()?;
            let deleted: u64 = metas.iter().map(|m| u64::from(m.num_deleted_docs())).sum();
            let with_deletes: Vec<(tantivy::index::SegmentId, u32)> = metas
                .iter()
                .filter(|m| m.num_deleted_docs() > 0)
                .map(|m| (m.id(), m.max_doc()))
                .collect();
            (merge_groups(with_deletes), metas.len(), deleted)
        };
        // Only segments holding deleted documents are rewritten, in two groups of about
        // equal size merged at the same time (a merge is single-threaded; the writer runs
        // merges on its own pool).
        let merges: Vec<_> = groups.iter().map(|g| writer.merge(g)).collect();
        for m in merges {
            m.wait()?;
        }
        // Our reader still holds the old segments, which keeps their files from the
        // garbage collector; move it to the merged segment first.
        index.reload()?;
        let removed = writer.garbage_collect_files().wait()?;
        writer.wait_merging_threads()?;
        tracing::info!(
            segments,
            merged = groups.iter().map(Vec::len).sum::<usize>(),
            deleted,
            removed_files = removed.deleted_files.len(),
            "search index merged to drop deleted documents"
        );
        Ok(())
    }
}

/// Splits the segments to rewrite into at most two groups of about equal size (largest
/// first, each to the lighter group). A single segment is merged alone: a merge of one
/// segment rewrites it without its deleted documents.
fn merge_groups(
    mut segments: Vec<(tantivy::index::SegmentId, u32)>,
) -> Vec<Vec<tantivy::index::SegmentId>> {
    segments.sort_by_key(|s| std::cmp::Reverse(s.1));
    let mut groups: [(u64, Vec<tantivy::index::SegmentId>); 2] = Default::default();
    for (id, docs) in segments {
        let lighter = if groups[0].0 <= groups[1].0 { 0 } else { 1 };
        groups[lighter].0 += u64::from(docs);
        groups[lighter].1.push(id);
    }
    groups
        .into_iter()
        .map(|(_, ids)| ids)
        .filter(|ids| !ids.is_empty())
        .collect()
}
