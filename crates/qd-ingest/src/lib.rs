//! Getting mail into quietdesk: sources and the ingest pipeline.
//!
//! Today: file sources for `quietdesk import` ([`source`]: Maildir, mbox, single message
//! files and directories of them) and the import [`pipeline`] (read -> parse in parallel
//! -> store in checkpointed batches), and the IMAP source ([`imap`]: mailboxes watched
//! with IDLE, taken exactly once through the same store path). Parsing is `qd-mail`'s
//! job, threading and storage `qd-store`'s.

pub mod ack;
pub mod imap;
pub mod pipeline;
pub mod source;
pub mod steps;

pub use pipeline::{
    import_path, new_message, prepare_blob, source_key, Failure, ImportSettings, ImportSummary,
    NoProgress, Progress,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Source(#[from] source::SourceError),
    #[error(transparent)]
    Store(#[from] qd_store::Error),
    #[error("import worker thread: {0}")]
    Thread(String),
}
