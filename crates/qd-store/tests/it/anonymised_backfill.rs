//! Migration 9 marks tickets anonymised before it (requester with an anonymised
//! address), so an upgraded store keeps them closed to new mail by number.

use chrono::{TimeZone, Utc};
use migration::{Alias, Expr, Migrator, MigratorTrait, Query};
use sea_orm::sea_query::ExprTrait;
use sea_orm::{ConnectionTrait, Database};

pub(crate) async fn insert_returning_id(
    db: &sea_orm::DatabaseConnection,
    table: &str,
    cols: &[(&str, sea_orm::Value)],
) -> i64 {
    let stmt = Query::insert()
        .into_table(Alias::new(table))
        .columns(cols.iter().map(|(c, _)| Alias::new(*c)))
        .values_panic(cols.iter().map(|(_, v)| Expr::val(v.clone())))
        .returning_col(Alias::new("id"))
        .to_owned();
    db.query_one(&stmt)
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap()
}

async fn tickets_anonymised_before_are_marked(url: &str) {
    let db = Database::connect(url).await.unwrap();
    Migrator::up(&db, Some(8)).await.unwrap();
    let at = Utc.with_ymd_and_hms(2024, 3, 1, 10, 0, 0).unwrap();
    let mut tickets = Vec::new();
    for (n, address) in [
        (1i64, "erased-contact-7@erased.invalid"),
        (2, "ann@example.org"),
    ] {
        let contact = insert_returning_id(
            &db,
            "contacts",
            &[
                ("address", address.into()),
                ("created_at", at.into()),
                ("last_seen_at", at.into()),
            ],
        )
        .await;
        tickets.push(
            insert_returning_id(
                &db,
                "tickets",
                &[
                    ("number", n.into()),
                    ("subject", "[erased]".into()),
                    ("status", "closed".into()),
                    ("requester_id", contact.into()),
                    ("created_at", at.into()),
                    ("last_activity_at", at.into()),
                ],
            )
            .await,
        );
    }
    Migrator::up(&db, None).await.unwrap();
    let marked = |id: i64| {
        let db = &db;
        async move {
            db.query_one(
                &Query::select()
                    .expr(Expr::col(Alias::new("anonymised_at")).is_not_null())
                    .from(Alias::new("tickets"))
                    .and_where(Expr::col(Alias::new("id")).eq(id))
                    .to_owned(),
            )
            .await
            .unwrap()
            .unwrap()
            .try_get_by_index::<bool>(0)
            .unwrap()
        }
    };
    assert!(marked(tickets[0]).await, "the erased requester's ticket");
    assert!(!marked(tickets[1]).await, "Ann's ticket");
    db.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("qd.db").display());
    tickets_anonymised_before_are_marked(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    let pg = qd_testkit::PgDatabase::create()
        .await
        .expect("PostgreSQL for the store tests");
    tickets_anonymised_before_are_marked(pg.url()).await;
}
