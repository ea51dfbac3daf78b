//! qd-store against both backends: every scenario runs on a fresh SQLite file and on a
//! private PostgreSQL database (see qd-testkit; PostgreSQL must be reachable).
// Test code: a failed unwrap is a failed test with its location, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod anonymised_backfill;
mod batch;
mod former_backfill;
mod keys;
mod learning;
mod lookup_keys;
mod unavailable;

use qd_store::Store;

pub struct Backend {
    pub store: Store,
    pub _dir: tempfile::TempDir,
    pub _pg: Option<qd_testkit::PgDatabase>,
}

pub async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("qd.db").display());
    let store = Store::connect(&url).await.unwrap();
    Backend {
        store,
        _dir: dir,
        _pg: None,
    }
}

pub async fn postgres() -> Backend {
    let pg = qd_testkit::PgDatabase::create()
        .await
        .expect("PostgreSQL for the store tests");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(pg.url()).await.unwrap();
    Backend {
        store,
        _dir: dir,
        _pg: Some(pg),
    }
}

/// Runs one async scenario on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::sqlite().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::postgres().await).await;
            }
        }
    };
}
