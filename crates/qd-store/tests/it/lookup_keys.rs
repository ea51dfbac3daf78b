//! Migration 7 replaces the text indexes over Message-IDs, content hashes and digests by
//! 64-bit lookup keys; rows stored before it must get their keys, or an upgraded store
//! would stop finding duplicates and thread parents.

use chrono::{TimeZone, Utc};
use migration::{Alias, Expr, Migrator, MigratorTrait, Query};
use qd_core::{lookup_key, TicketRefFormat};
use sea_orm::sea_query::ExprTrait;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};

use crate::batch::{msg, settings};

async fn insert(db: &DatabaseConnection, table: &str, cols: &[(&str, sea_orm::Value)]) {
    let stmt = Query::insert()
        .into_table(Alias::new(table))
        .columns(cols.iter().map(|(c, _)| Alias::new(*c)))
        .values_panic(cols.iter().map(|(_, v)| Expr::val(v.clone())))
        .to_owned();
    db.execute(&stmt).await.unwrap();
}

async fn rows_stored_before_the_keys_get_them(url: &str) {
    let db = Database::connect(url).await.unwrap();
    Migrator::up(&db, Some(6)).await.unwrap();
    let at = Utc.with_ymd_and_hms(2024, 3, 1, 10, 0, 0).unwrap();
    insert(
        &db,
        "tickets",
        &[
            ("number", 1i64.into()),
            ("subject", "Old".into()),
            ("status", "open".into()),
            ("created_at", at.into()),
            ("last_activity_at", at.into()),
        ],
    )
    .await;
    let ticket: i64 = db
        .query_one(
            &Query::select()
                .column(Alias::new("id"))
                .from(Alias::new("tickets"))
                .and_where(Expr::col(Alias::new("number")).eq(1i64))
                .to_owned(),
        )
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap();
    insert(
        &db,
        "blobs",
        &[
            ("digest", "d".repeat(64).into()),
            ("scope", "unattributed".into()),
            ("codec", "zstd".into()),
            ("size", 1i64.into()),
            ("stored_size", 1i64.into()),
            ("data", vec![0u8].into()),
            ("created_at", at.into()),
        ],
    )
    .await;
    insert(
        &db,
        "messages",
        &[
            ("ticket_id", ticket.into()),
            ("direction", "in".into()),
            ("message_id", "old@x".into()),
            ("to_addrs", "[]".into()),
            ("cc_addrs", "[]".into()),
            ("received_at", at.into()),
            ("subject", "Old".into()),
            ("body_text", "".into()),
            ("size", 1i64.into()),
            ("content_hash", "hash-of-old@x".into()),
            ("has_attachments", false.into()),
            ("defects", "[]".into()),
        ],
    )
    .await;
    // A reference to a message that has not arrived yet.
    insert(
        &db,
        "thread_refs",
        &[("ref_id", "early@x".into()), ("ticket_id", ticket.into())],
    )
    .await;
    db.close().await.unwrap();

    // Connecting applies migration 7.
    let store = qd_store::Store::connect(url).await.unwrap();
    let fmt = TicketRefFormat::new("[#QD-{n}]").unwrap();
    let mut batch = vec![
        // A duplicate of the old message, found through its backfilled content key.
        msg("old@x", "a@example.com", "Old", &[]),
        // A reply to it, threaded through its backfilled Message-ID key.
        msg("reply@x", "a@example.com", "Re: Old", &["old@x"]),
        // The message the old reference named, joined through the backfilled ref key.
        msg("early@x", "a@example.com", "Early", &[]),
    ];
    assert_eq!(batch[0].content_hash, "hash-of-old@x");
    let out = store
        .store_batch(&mut batch, None, &settings(&fmt))
        .await
        .unwrap();
    assert_eq!(out.duplicates, vec![0]);
    assert_eq!(out.new_tickets, 0);
    assert!(out.stored.iter().all(|s| s.ticket_id == ticket));

    let digest_key = lookup_key(&"d".repeat(64));
    let db = Database::connect(url).await.unwrap();
    let row = db
        .query_one(
            &Query::select()
                .expr(Expr::col(Alias::new("digest_key")))
                .from(Alias::new("blobs"))
                .and_where(Expr::col(Alias::new("digest")).eq("d".repeat(64)))
                .to_owned(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get_by_index::<i64>(0).unwrap(), digest_key);
    db.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("qd.db").display());
    rows_stored_before_the_keys_get_them(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    let pg = qd_testkit::PgDatabase::create()
        .await
        .expect("PostgreSQL for the store tests");
    rows_stored_before_the_keys_get_them(pg.url()).await;
}
