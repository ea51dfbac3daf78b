//! Full-text search over stored messages: the tantivy index and the staff query language.
//!
//! [`SearchIndex`] owns the index (on disk or in RAM) and answers [`Query`]s, parsed from what
//! staff type (`from:alice invoice -paid before:2024-03-01`), with [`RawHit`]s: message ids
//! read from fast fields, never from the document store. [`SearchWriter`] adds, replaces and
//! deletes [`SearchDoc`]s and, for erasure, merges segments until no deleted document is left
//! on disk. The database is the source of truth: subject and body are indexed but not stored,
//! so [`SearchIndex::snippet`] highlights text the caller loads from the store.
//!
//! This is the only crate of the workspace that names tantivy.

mod compile;
mod index;
mod query;
mod schema;
mod snippet;
pub mod sync;
mod writer;

use std::fmt;
use std::path::PathBuf;

pub use index::{RawHit, SearchIndex};
pub use query::{Query, QueryError, QueryErrorKind};
pub use writer::SearchWriter;

/// One stored message as the index sees it.
#[derive(Clone, PartialEq)]
pub struct SearchDoc {
    /// Primary key of the message row: the document identity in the index.
    pub message_db_id: i64,
    pub ticket_id: i64,
    pub ticket_number: i64,
    pub subject: String,
    /// Plain text.
    pub body: String,
    /// `Display Name <addr>` or a bare address.
    pub from: String,
    /// To and Cc, space separated.
    pub to: String,
    /// Ticket status: `open`, `pending` or `closed`.
    pub status: String,
    pub date: chrono::DateTime<chrono::Utc>,
    pub tags: Vec<String>,
    pub has_attachment: bool,
}

// Hand-written so that a `{:?}` of a document in a log line shows ids, never message text.
impl fmt::Debug for SearchDoc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SearchDoc")
            .field("message_db_id", &self.message_db_id)
            .field("ticket_id", &self.ticket_id)
            .field("ticket_number", &self.ticket_number)
            .field("date", &self.date)
            .finish_non_exhaustive()
    }
}

/// What went wrong in the search index.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create the search index directory {}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the search index directory {}", path.display())]
    OpenDir {
        path: PathBuf,
        #[source]
        source: tantivy::directory::error::OpenDirectoryError,
    },
    /// The index on disk was built with another schema (or analyzer version, or by an
    /// incompatible tantivy); it has to be emptied and rebuilt from the store.
    #[error("the search index in {} does not fit this version ({reason}); it must be rebuilt", path.display())]
    SchemaMismatch { path: PathBuf, reason: String },
    /// A matching document lacks a fast field every document is written with: the index is
    /// damaged.
    #[error("the search index writer was closed by a failed merge")]
    Closed,
    #[error("search index document lacks its {field}")]
    MissingField { field: &'static str },
    #[error("search index: {0}")]
    Index(#[from] tantivy::TantivyError),
}
