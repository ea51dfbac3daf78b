use std::fmt;
use std::ops::Bound;
use std::path::Path;

use tantivy::collector::TopDocs;
use tantivy::columnar::Column;
use tantivy::directory::MmapDirectory;
use tantivy::query::{BooleanQuery, Query as TantivyQuery, RangeQuery};
use tantivy::schema::{Field, Schema};
use tantivy::{
    DocAddress, Index, IndexReader, IndexSettings, Order, ReloadPolicy, Searcher, TantivyError,
    Term,
};

use crate::compile::compile;
use crate::schema::{schema, tokenizers, Fields, DATE, MESSAGE_DB_ID, TICKET_NUMBER};
use crate::{Error, Query, SearchWriter};

/// The full-text index of messages. Cheap to clone; clones share the index and its reader.
#[derive(Clone)]
pub struct SearchIndex {
    pub(crate) index: Index,
    pub(crate) reader: IndexReader,
    pub(crate) fields: Fields,
}

/// One message that matched. The caller loads the message from the store by its id.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct RawHit {
    pub message_db_id: i64,
    pub ticket_number: i64,
    /// Relevance (BM25); 0 when the query has no free text and hits come newest first.
    pub score: f32,
}

impl fmt::Debug for SearchIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SearchIndex").finish_non_exhaustive()
    }
}

impl SearchIndex {
    /// Opens the index in `dir`, creating the directory and an empty index when there is
    /// none. An index built with another schema is [`Error::SchemaMismatch`]: the caller
    /// empties the directory and rebuilds the index from the store.
    pub fn open_or_create(dir: &Path) -> Result<SearchIndex, Error> {
        std::fs::create_dir_all(dir).map_err(|source| Error::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let directory = MmapDirectory::open(dir).map_err(|source| Error::OpenDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let (schema, fields) = schema();
        let mismatch = |reason: String| Error::SchemaMismatch {
            path: dir.to_path_buf(),
            reason,
        };
        let index = if Index::exists(&directory).map_err(TantivyError::from)? {
            let index = match Index::open(directory) {
                Ok(index) => index,
                Err(TantivyError::IncompatibleIndex(why)) => {
                    return Err(mismatch(format!("{why:?}")))
                }
                Err(e) => return Err(e.into()),
            };
            if let Some(reason) = schema_difference(&index.schema(), &schema) {
                return Err(mismatch(reason));
            }
            index
        } else {
            Index::create(directory, schema, IndexSettings::default())?
        };
        SearchIndex::wrap(index, fields)
    }

    /// An empty index in memory, for tests.
    pub fn create_in_ram() -> Result<SearchIndex, Error> {
        let (schema, fields) = schema();
        SearchIndex::wrap(Index::create_in_ram(schema), fields)
    }

    fn wrap(mut index: Index, fields: Fields) -> Result<SearchIndex, Error> {
        index.set_tokenizers(tokenizers());
        // Our own writer reloads right after each commit; the delayed reload picks up
        // commits made by another process (a `reindex` run) on the same directory.
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::OnCommitWithDelay)
            .try_into()?;
        Ok(SearchIndex {
            index,
            reader,
            fields,
        })
    }

    /// A writer with `heap_bytes` of indexing memory shared by `threads` indexing threads.
    /// Only one writer may be open on an index at a time (tantivy holds a lock file).
    pub fn writer(&self, heap_bytes: usize, threads: usize) -> Result<SearchWriter, Error> {
        SearchWriter::new(self.clone(), heap_bytes, threads)
    }

    /// Live documents as of the last commit.
    pub fn num_docs(&self) -> Result<u64, Error> {
        self.reload()?;
        Ok(self.reader.searcher().num_docs())
    }

    /// Deleted documents still present in segments as of the last commit. After
    /// [`SearchWriter::merge_away_deleted`] this is 0: no deleted document is left on disk.
    pub fn deleted_docs(&self) -> Result<u64, Error> {
        self.reload()?;
        Ok(self
            .reader
            .searcher()
            .segment_readers()
            .iter()
            .map(|s| u64::from(s.num_deleted_docs()))
            .sum())
    }

    /// Makes the last commit visible to searches now rather than after the reload delay.
    pub fn reload(&self) -> Result<(), Error> {
        Ok(self.reader.reload()?)
    }

    /// Up to `limit` hits, best first; queries without free text (only field filters, dates,
    /// exclusions, or nothing) return the newest messages first.
    pub fn search(&self, query: &Query, limit: usize) -> Result<Vec<RawHit>, Error> {
        let searcher = self.reader.searcher();
        // TopDocs allocates for `limit` up front and panics on 0.
        let limit = usize::try_from(searcher.num_docs()).map_or(limit, |n| limit.min(n));
        if limit == 0 {
            return Ok(Vec::new());
        }
        let tantivy_query = compile(query, &self.fields);
        let hits: Vec<(f32, DocAddress)> = if query.ranks() {
            searcher.search(
                &*tantivy_query,
                &TopDocs::with_limit(limit).order_by_score(),
            )?
        } else {
            newest_first(&searcher, query, tantivy_query, self.fields.date, limit)?
                .into_iter()
                .map(|(_date, address)| (0.0, address))
                .collect()
        };
        resolve(&searcher, hits)
    }

    /// HTML for showing why `text` (a subject or body from the store) matched `query`:
    /// at most about `max_chars` of it, the matched words in `<b>…</b>`, everything else
    /// escaped. Without a match, the start of the text.
    pub fn snippet(&self, query: &Query, text: &str, max_chars: usize) -> String {
        crate::snippet::snippet(query, text, max_chars, self.fields.all)
    }
}

/// The `limit` newest matches of `query`.
///
/// Sorting every match by date is linear in the matches: `status:open` over a million
/// messages would read hundreds of thousands of dates. So the newest slice of the date range
/// is searched first, widening it until it holds `limit` matches or covers everything. The
/// result is exact: when the slice from `t` on holds `limit` matches, every match outside it
/// is older than all of them.
fn newest_first(
    searcher: &Searcher,
    parsed: &Query,
    query: Box<dyn TantivyQuery>,
    date: Field,
    limit: usize,
) -> Result<Vec<(Option<i64>, DocAddress)>, Error> {
    let newest = TopDocs::with_limit(limit).order_by_fast_field::<i64>(DATE, Order::Desc);
    let Some((mut oldest, mut latest)) = date_bounds(searcher)? else {
        return Ok(Vec::new());
    };
    // With `before:` the newest slice of the index may hold no candidate at all.
    let (after, before) = parsed.date_limits();
    if let Some(after) = after {
        oldest = oldest.max(after);
    }
    if let Some(before) = before {
        latest = latest.min(before.saturating_sub(1));
    }
    if oldest > latest {
        return Ok(Vec::new());
    }
    let mut window = (latest.saturating_sub(oldest) / 256).max(86_400);
    loop {
        let from = latest.saturating_sub(window);
        if from <= oldest {
            return Ok(searcher.search(&*query, &newest)?);
        }
        let recent = BooleanQuery::intersection(vec![
            query.box_clone(),
            Box::new(RangeQuery::new(
                Bound::Included(Term::from_field_i64(date, from)),
                Bound::Unbounded,
            )),
        ]);
        let hits = searcher.search(&recent, &newest)?;
        if hits.len() >= limit {
            return Ok(hits);
        }
        window = window.saturating_mul(16);
    }
}

/// The oldest and latest date in the index (deleted documents included), if any.
fn date_bounds(searcher: &Searcher) -> Result<Option<(i64, i64)>, Error> {
    let mut bounds: Option<(i64, i64)> = None;
    for segment in searcher.segment_readers() {
        if segment.num_docs() == 0 {
            continue;
        }
        let dates = segment.fast_fields().i64(DATE)?;
        let (lo, hi) = (dates.min_value(), dates.max_value());
        bounds = Some(bounds.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
    }
    Ok(bounds)
}

/// Names the fields that differ between the schema on disk and ours, or `None` if equal.
fn schema_difference(on_disk: &Schema, ours: &Schema) -> Option<String> {
    if on_disk == ours {
        return None;
    }
    let mut differing: Vec<&str> = Vec::new();
    for (_, entry) in ours.fields() {
        let same = on_disk
            .get_field(entry.name())
            .is_ok_and(|f| on_disk.get_field_entry(f) == entry);
        if !same {
            differing.push(entry.name());
        }
    }
    for (_, entry) in on_disk.fields() {
        if ours.get_field(entry.name()).is_err() {
            differing.push(entry.name());
        }
    }
    Some(if differing.is_empty() {
        "fields are in another order".to_string()
    } else {
        format!("fields differ: {}", differing.join(", "))
    })
}

/// Reads the ids of `hits` from fast fields, opening each segment's columns once.
fn resolve(searcher: &Searcher, hits: Vec<(f32, DocAddress)>) -> Result<Vec<RawHit>, Error> {
    let mut columns: Vec<Option<(Column<i64>, Column<i64>)>> =
        vec![None; searcher.segment_readers().len()];
    let mut out = Vec::with_capacity(hits.len());
    for (score, address) in hits {
        let slot = columns
            .get_mut(address.segment_ord as usize)
            .ok_or(Error::MissingField {
                field: MESSAGE_DB_ID,
            })?;
        let (ids, tickets) = match slot {
            Some(opened) => &*opened,
            None => {
                let fast = searcher.segment_reader(address.segment_ord).fast_fields();
                slot.insert((fast.i64(MESSAGE_DB_ID)?, fast.i64(TICKET_NUMBER)?))
            }
        };
        out.push(RawHit {
            message_db_id: ids.first(address.doc_id).ok_or(Error::MissingField {
                field: MESSAGE_DB_ID,
            })?,
            ticket_number: tickets.first(address.doc_id).ok_or(Error::MissingField {
                field: TICKET_NUMBER,
            })?,
            score,
        });
    }
    Ok(out)
}
