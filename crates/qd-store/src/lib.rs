//! The ticket store: every durable fact of quietdesk lives here.
//!
//! [`Store`] wraps one sea-orm connection (SQLite file by default, PostgreSQL at scale —
//! the URL decides); raw mail lives compressed in its `blobs` table ([`blob`]).
//! [`Store::store_batch`] is the one
//! write path of ingest: it deduplicates, threads, files contacts and tickets, writes
//! messages, attachments, blob rows, search-queue entries and the source checkpoint in a
//! single transaction. The search index follows the `search_queue` table, never the
//! other way round. Only this crate names sea-orm.

mod batch;
pub mod blob;
pub mod crypto;
pub mod entity;
mod erase;
mod forgotten;
pub mod fts;
mod keys;
mod learning;
mod mentions;
mod outbox;
mod privacy;
mod queries;

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};

pub use batch::{
    BatchAcks, BatchOutcome, BatchSettings, Checkpoint, HeldPosition, MessageVerdict,
    NewAttachment, NewMessage, ReportedFailure, StoredMessage,
};
pub use blob::{BlobError, PreparedBlob};
pub use crypto::{CryptoError, MasterKey};
pub use erase::{DeletionCounts, QuarantineRow, RetentionRow};
pub use keys::{BlobReport, KeyReport, UnreadableBlob};
pub use learning::{LearnedModel, Taught, TeachOutcome, Teaching};
pub use outbox::{
    sender_hash, EnqueueOutcome, NewOutboxEntry, OutboxEntry, OutboxKind, OutboxStatus, WriteTxn,
};
pub use privacy::{Actor, Change, CustomerRecord, StatusOutcome, SubjectRef};
pub use queries::{IndexRow, MessageText, QueueItem, Stats};

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open the database at {url}: {source}")]
    Connect { url: String, source: sea_orm::DbErr },
    /// No connection could be made: nothing listens at the address, the server is
    /// starting or shutting down, or it does not answer. `reason` is the driver's cause
    /// when it gave one.
    #[error("cannot reach the database at {url}: {reason} (is the server running, and is the address right?)")]
    Unreachable { url: String, reason: String },
    #[error("database migration failed: {0}")]
    Migrate(sea_orm::DbErr),
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Crypto(#[from] crypto::CryptoError),
    #[error("sealed raw mail cannot be read: no master key is configured (storage.master_key_file or QUIETDESK_MASTER_KEY)")]
    NoMasterKey,
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("stored data is inconsistent: {0}")]
    Inconsistent(String),
    /// Erasure refused: a legal hold or the tax-evidence class keeps some of the data.
    #[error("erasure refused: {0}; lift the hold (`quietdesk customer hold WHO --off`, `quietdesk ticket hold N --off`) or reclassify the ticket (`quietdesk ticket class N default`) first, if the obligation has ended")]
    Held(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How long the pool keeps trying for a connection, also when the store opens.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

impl Error {
    /// Whether the database could not be reached or dropped the connection: it is
    /// starting, restarting or failing over, or the network between is cut. Worth
    /// waiting for, unlike a wrong URL, a refused login, a missing database or a failing
    /// statement.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Unreachable { .. } => true,
            Error::Connect { source, .. } | Error::Migrate(source) | Error::Db(source) => {
                db_unavailable(source)
            }
            _ => false,
        }
    }
}

/// The driver's error under sea-orm's, when there is one.
fn sqlx_cause(e: &sea_orm::DbErr) -> Option<&sea_orm::sqlx::Error> {
    use sea_orm::{DbErr, RuntimeErr};
    match e {
        DbErr::Conn(RuntimeErr::SqlxError(e))
        | DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e)) => Some(e.as_ref()),
        _ => None,
    }
}

/// Whether the pool gave up waiting for a connection.
fn pool_timed_out(e: &sea_orm::DbErr) -> bool {
    matches!(
        e,
        sea_orm::DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::Timeout)
    ) || matches!(sqlx_cause(e), Some(sea_orm::sqlx::Error::PoolTimedOut))
}

fn db_unavailable(e: &sea_orm::DbErr) -> bool {
    if matches!(e, sea_orm::DbErr::ConnectionAcquire(_)) {
        return true;
    }
    sqlx_cause(e).is_some_and(sqlx_unavailable)
}

fn sqlx_unavailable(e: &sea_orm::sqlx::Error) -> bool {
    use sea_orm::sqlx::Error as Sqlx;
    match e {
        Sqlx::Io(_) | Sqlx::PoolTimedOut | Sqlx::PoolClosed | Sqlx::WorkerCrashed => true,
        // SQLSTATE class 08 (connection exception) and 57P (the server is shutting down,
        // crashed or not yet accepting connections).
        Sqlx::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
        _ => false,
    }
}

/// How long the first connection attempt to PostgreSQL may take before the server counts
/// as unreachable (an address that drops packets instead of refusing them).
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// One direct connection attempt before the pool is built. The pool retries a refused
/// connection until its acquire timeout (30 s) and then keeps no cause, so a command
/// pointed at a server that is down waited half a minute to say "pool timed out". The
/// probe reports "connection refused" at once, with the driver's words. Errors that are
/// not about reaching the server (a wrong password, a missing database) are left to the
/// pool, which reports them as before.
async fn probe_postgres(url: &str) -> Result<()> {
    use sea_orm::sqlx::{Connection, PgConnection};
    let unreachable = |reason: String| Error::Unreachable {
        url: redact_url(url),
        reason,
    };
    match tokio::time::timeout(PROBE_TIMEOUT, PgConnection::connect(url)).await {
        Err(_) => Err(unreachable(format!(
            "no answer within {} s",
            PROBE_TIMEOUT.as_secs()
        ))),
        Ok(Ok(conn)) => {
            // A failed goodbye says nothing about the server's health.
            let _ = conn.close().await;
            Ok(())
        }
        Ok(Err(e)) if sqlx_unavailable(&e) => Err(unreachable(e.to_string())),
        Ok(Err(_)) => Ok(()),
    }
}

/// Which database engine the store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// How long [`Store::purge_freed`] waits for older transactions on PostgreSQL.
const OLDER_TRANSACTIONS_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct Store {
    db: DatabaseConnection,
    backend: Backend,
    /// `None`: blobs are written unsealed (tests of other crates); the binary always sets
    /// a master key.
    keys: Option<std::sync::Arc<crypto::KeyRing>>,
}

impl Store {
    /// Connects and applies pending migrations.
    ///
    /// SQLite runs in WAL mode with `secure_delete` on, so deleted rows are overwritten
    /// with zeros rather than left in free pages — erasure must be physical.
    pub async fn connect(url: &str) -> Result<Store> {
        let mut opts = ConnectOptions::new(url.to_string());
        opts.sqlx_logging(false)
            .connect_timeout(Duration::from_secs(10))
            .acquire_timeout(ACQUIRE_TIMEOUT);
        let backend = if url.starts_with("sqlite:") {
            // One writer at a time is SQLite's model; a few readers beside it are cheap.
            opts.max_connections(4).min_connections(1);
            opts.map_sqlx_sqlite_opts(|o| {
                use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
                o.create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(30))
                    .pragma("secure_delete", "on")
                    .pragma("cache_size", "-65536")
                    // Statement journals (every multi-row INSERT in a transaction keeps
                    // one) stay in memory: as temp files they went to /var/tmp, outside
                    // the data dir where erasure cannot reach them, and were a third of
                    // an import's writes (strace, 50k messages).
                    .pragma("temp_store", "memory")
                    // Checkpoint every 64 MiB of WAL instead of 4 MiB: index pages that
                    // every batch touches reach the main file once per checkpoint, not
                    // once per batch (a fifth fewer bytes written by an import).
                    .pragma("wal_autocheckpoint", "16384")
                    .pragma("journal_size_limit", "67108864")
            });
            Backend::Sqlite
        } else {
            opts.max_connections(8);
            Backend::Postgres
        };
        if backend == Backend::Postgres {
            probe_postgres(url).await?;
        }
        let db = Database::connect(opts).await.map_err(|source| {
            if pool_timed_out(&source) {
                Error::Unreachable {
                    url: redact_url(url),
                    reason: format!("no connection within {} s", ACQUIRE_TIMEOUT.as_secs()),
                }
            } else {
                Error::Connect {
                    url: redact_url(url),
                    source,
                }
            }
        })?;
        // Two processes starting at once on one database (`serve` and a CLI command) may
        // race to apply the same migration; the loser's statement fails on the winner's
        // table. Retrying finds the migration recorded as applied.
        let mut attempt = 0;
        loop {
            match Migrator::up(&db, None).await {
                Ok(()) => break,
                Err(e) if attempt < 5 => {
                    attempt += 1;
                    tracing::debug!(error = %e, attempt, "migration failed; retrying in case another process was migrating");
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
                Err(e) => return Err(Error::Migrate(e)),
            }
        }
        Ok(Store {
            db,
            backend,
            keys: None,
        })
    }

    /// Seals raw mail written from now on with per-scope keys wrapped by `master`, and
    /// opens sealed blobs on read.
    pub fn with_master_key(mut self, master: crypto::MasterKey) -> Store {
        self.keys = Some(std::sync::Arc::new(crypto::KeyRing::new(master)));
        self
    }

    /// Master-key rotation: re-seals every live data key under `new`, in one transaction
    /// (all keys move or none), and returns the store working with the new key. Sealed
    /// blobs are untouched (they are sealed by data keys, which do not change). Old
    /// backups keep opening only with the old master key: retiring it is what makes the
    /// keys an erasure destroyed unreadable in those backups too.
    pub async fn rotate_master_key(self, new: crypto::MasterKey) -> Result<(Store, KeyReport)> {
        let old = self.keys.as_ref().ok_or(Error::NoMasterKey)?.master.clone();
        let txn = self.begin_write().await?;
        let report = keys::rewrap_all(&txn, &old, &new).await?;
        txn.commit().await?;
        Ok((self.with_master_key(new), report))
    }

    /// Opens every live data key with the configured master key, changing nothing: the
    /// check to run after restoring a backup or before retiring an old key.
    pub async fn check_master_key(&self) -> Result<KeyReport> {
        let ring = self.keys.as_ref().ok_or(Error::NoMasterKey)?;
        keys::check_all(&self.db, &ring.master).await
    }

    /// Opens every stored raw mail with its scope's key, changing nothing, and reports
    /// the mail that no longer opens: sealed with a key that a rolled-back transaction
    /// took back (possible before the fix of 2026-12-04), or damaged. It reads every
    /// blob (47 s for a million messages).
    /// `checked` is told, after each group read, how many more blobs were checked (for a
    /// progress bar).
    pub async fn check_blobs(
        &self,
        checked: &mut (dyn FnMut(u64) + Send),
    ) -> Result<keys::BlobReport> {
        keys::check_blobs(&self.db, self.keys.as_deref(), checked).await
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Starts a transaction that will write. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`): a deferred transaction that reads first and writes later
    /// fails with SQLITE_BUSY_SNAPSHOT when another connection committed in between,
    /// which no busy timeout cures. PostgreSQL ignores the mode.
    pub(crate) async fn begin_write(&self) -> Result<sea_orm::DatabaseTransaction> {
        use sea_orm::{SqliteTransactionMode, TransactionOptions, TransactionTrait};
        Ok(self
            .db
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..TransactionOptions::default()
            })
            .await?)
    }

    /// A write transaction that also excludes the storing batches on PostgreSQL (their
    /// advisory lock; SQLite's write lock does that already). Every transaction that
    /// deletes mail, or changes the facts retention judges by (status, holds, classes,
    /// quarantine), takes it: a batch threading a reply onto a ticket being deleted, or
    /// a status set while a deletion re-reads it, then waits its turn instead of racing.
    pub(crate) async fn begin_serialized(&self) -> Result<sea_orm::DatabaseTransaction> {
        use sea_orm::ConnectionTrait;
        let txn = self.begin_write().await?;
        if self.backend == Backend::Postgres {
            txn.execute_unprepared(crate::batch::STORE_LOCK).await?;
        }
        Ok(txn)
    }

    /// Cheap liveness check of the database connection.
    pub async fn ping(&self) -> Result<()> {
        self.db.ping().await?;
        Ok(())
    }

    /// Flushes the SQLite write-ahead log into the main file and truncates it, so no
    /// stale page copies linger in the WAL (after an erasure, or before a backup).
    /// When another connection's read kept the log from being truncated (after SQLite's
    /// busy timeout), that is logged; the next checkpoint does it then.
    pub async fn checkpoint_wal(&self) -> Result<()> {
        if self.backend != Backend::Sqlite {
            return Ok(());
        }
        // One row: busy, frames in the log, frames checkpointed.
        let row = self
            .db
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Sqlite,
                "PRAGMA wal_checkpoint(TRUNCATE)",
            ))
            .await?;
        let busy = row
            .map(|r| r.try_get_by_index::<i64>(0))
            .transpose()?
            .unwrap_or(0);
        if busy != 0 {
            tracing::warn!(
                "the write-ahead log was not truncated: another connection was reading; \
                 deleted pages stay in it until the next checkpoint"
            );
        }
        Ok(())
    }

    /// Makes what an erasure or a retention run deleted unreadable as far as the backend
    /// allows without locking the store for long:
    /// - SQLite deletes with `secure_delete` (freed bytes are zeroed), so only the
    ///   write-ahead log's copies are left: the log is checkpointed and truncated.
    /// - PostgreSQL keeps a deleted or updated row's old version in its page until
    ///   VACUUM. The destroyed data keys' table (`blob_keys`, one small row per contact)
    ///   is rewritten with `VACUUM FULL`, so a wrapped key that crypto-shredding removed
    ///   is gone from the table's files at once. Every other table gets a plain
    ///   `VACUUM`: old row versions are pruned and their space is reused by later writes,
    ///   but until then their bytes can stay in the page; [`Store::compact`] rewrites
    ///   the tables so that nothing is left.
    pub async fn purge_freed(&self) -> Result<()> {
        self.vacuum(&["VACUUM FULL blob_keys", "VACUUM"]).await
    }

    /// SQLite: the WAL checkpoint (`secure_delete` zeroed what was deleted). PostgreSQL:
    /// `statements`, once no transaction older than the call can keep deleted rows.
    async fn vacuum(&self, statements: &[&str]) -> Result<()> {
        match self.backend {
            Backend::Sqlite => {
                self.checkpoint_wal().await?;
            }
            Backend::Postgres => {
                self.wait_for_older_transactions(OLDER_TRANSACTIONS_WAIT)
                    .await?;
                for statement in statements {
                    self.db.execute_unprepared(statement).await?;
                }
            }
        }
        Ok(())
    }

    /// PostgreSQL keeps a deleted row version while any transaction that might still see
    /// it is open, and VACUUM, even FULL, copies it along then. "Might see" is decided
    /// cluster-wide: a snapshot's horizon is the oldest transaction running in any
    /// database (another application's, an autovacuum ANALYZE, a `pg_dump`). So this
    /// waits, up to `limit`, until every transaction that was running when it was called
    /// has ended and no session holds a snapshot from before then. When one outlasts the
    /// wait, the vacuum runs all the same and the log says what stays; the next retention
    /// run (which vacuums the keys every time) takes it.
    async fn wait_for_older_transactions(&self, limit: Duration) -> Result<()> {
        let backend = sea_orm::DbBackend::Postgres;
        // Every transaction that committed before now has an id below this one.
        let horizon = self
            .db
            .query_one_raw(sea_orm::Statement::from_string(
                backend,
                "SELECT pg_snapshot_xmax(pg_current_snapshot())::text",
            ))
            .await?
            .map(|r| r.try_get_by_index::<String>(0))
            .transpose()?
            .unwrap_or_default();
        let deadline = std::time::Instant::now() + limit;
        loop {
            let older = self
                .db
                .query_one_raw(sea_orm::Statement::from_sql_and_values(
                    backend,
                    "SELECT (pg_snapshot_xmin(pg_current_snapshot()) < $1::xid8)::int \
                     + (SELECT count(*) FROM pg_stat_activity \
                        WHERE pid <> pg_backend_pid() AND backend_xmin IS NOT NULL \
                          AND age(backend_xmin) \
                            > age(($1::xid8::text::bigint % 4294967296)::text::xid))::int",
                    [horizon.clone().into()],
                ))
                .await?
                .map(|r| r.try_get_by_index::<i32>(0))
                .transpose()?
                .unwrap_or(0);
            if older == 0 {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                tracing::warn!(
                    "transactions older than the deletion are still open: until they end, \
                     deleted rows (destroyed keys among them) stay in the database files; \
                     the next retention run removes them"
                );
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The size of the database's files as the backend counts it: SQLite's pages,
    /// PostgreSQL's `pg_database_size`.
    pub async fn database_bytes(&self) -> Result<i64> {
        let (backend, sql) = match self.backend {
            Backend::Sqlite => (
                sea_orm::DbBackend::Sqlite,
                "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
            ),
            Backend::Postgres => (
                sea_orm::DbBackend::Postgres,
                "SELECT pg_database_size(current_database())::bigint",
            ),
        };
        let row = self
            .db
            .query_one_raw(sea_orm::Statement::from_string(backend, sql))
            .await?;
        Ok(row
            .map(|r| r.try_get_by_index::<i64>(0))
            .transpose()?
            .unwrap_or(0))
    }

    /// Leaves nothing deleted in the database's files. PostgreSQL: `VACUUM FULL`, which
    /// rewrites every table and locks each while it copies it (run it in a quiet hour).
    /// SQLite overwrote deleted data as it deleted it (`secure_delete`) and reuses the
    /// freed pages, so only its write-ahead log is checkpointed and truncated: its
    /// `VACUUM` would build the copy in memory (`temp_store=memory`, which keeps pages
    /// of mail out of temporary files outside the data dir), as large as the database.
    /// Copies outside the database files (PostgreSQL's write-ahead log and its archive,
    /// file-system free blocks, backups) are not reached; see ARCHITECTURE.md.
    pub async fn compact(&self) -> Result<()> {
        self.vacuum(&["VACUUM FULL"]).await
    }

    pub async fn close(self) -> Result<()> {
        self.checkpoint_wal().await?;
        self.db.close().await?;
        Ok(())
    }
}

/// Hides a password in a database URL before it reaches an error message or a log.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};

    /// A statement journal holds copies of the pages a statement changes, mail included;
    /// as a temp file it lands outside the data dir (SQLite's temp dir), where erasure
    /// cannot reach it. The connections must keep it in memory.
    #[tokio::test]
    async fn sqlite_keeps_statement_journals_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let store = super::Store::connect(&url).await.unwrap();
        let row = store
            .db
            .query_one_raw(Statement::from_string(
                DbBackend::Sqlite,
                "PRAGMA temp_store",
            ))
            .await
            .unwrap()
            .unwrap();
        // 2 = MEMORY.
        assert_eq!(row.try_get_by_index::<i32>(0).unwrap(), 2);
    }

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            super::redact_url("postgres://qd:s3cret@db:5432/qd"),
            "postgres://qd:***@db:5432/qd"
        );
        assert_eq!(
            super::redact_url("sqlite://./data/q.db"),
            "sqlite://./data/q.db"
        );
    }
}
