//! Migration 12 gives customers who went from active back to prospect before quietdesk
//! recorded when they left their `former_since`, so retention keeps their mail for the
//! former customer's term instead of a prospect's 12 months.

use chrono::{DateTime, TimeZone, Utc};
use migration::{Alias, Expr, Migrator, MigratorTrait, Query};
use sea_orm::sea_query::ExprTrait;
use sea_orm::{ConnectionTrait, Database};

use crate::anonymised_backfill::insert_returning_id;

async fn customers_who_left_get_their_date(url: &str) {
    let db = Database::connect(url).await.unwrap();
    Migrator::up(&db, Some(11)).await.unwrap();
    let day = |y, m, d| Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap();
    let mut ids = Vec::new();
    // (email, status, status_since, active_since, former_since)
    for (email, status, since, active, former) in [
        (
            "back@x",
            "prospect",
            day(2023, 6, 1),
            Some(day(2020, 1, 1)),
            None,
        ),
        ("new@x", "prospect", day(2023, 6, 1), None, None),
        (
            "gone@x",
            "former",
            day(2022, 1, 1),
            Some(day(2020, 1, 1)),
            Some(day(2022, 1, 1)),
        ),
        (
            "here@x",
            "active",
            day(2020, 1, 1),
            Some(day(2020, 1, 1)),
            None,
        ),
    ] {
        ids.push(
            insert_returning_id(
                &db,
                "customers",
                &[
                    ("email", email.into()),
                    ("status", status.into()),
                    ("status_since", since.into()),
                    ("active_since", active.into()),
                    ("former_since", former.into()),
                    ("legal_hold", false.into()),
                    ("created_at", day(2019, 1, 1).into()),
                    ("updated_at", day(2019, 1, 1).into()),
                ],
            )
            .await,
        );
    }
    Migrator::up(&db, None).await.unwrap();
    let mut former = Vec::new();
    for id in &ids {
        let row = db
            .query_one(
                &Query::select()
                    .column(Alias::new("former_since"))
                    .from(Alias::new("customers"))
                    .and_where(Expr::col(Alias::new("id")).eq(*id))
                    .to_owned(),
            )
            .await
            .unwrap()
            .unwrap();
        former.push(row.try_get_by_index::<Option<DateTime<Utc>>>(0).unwrap());
    }
    assert_eq!(
        former,
        vec![Some(day(2023, 6, 1)), None, Some(day(2022, 1, 1)), None]
    );
    // The history says so, for that customer only.
    let history = db
        .query_all(
            &Query::select()
                .columns([Alias::new("entity_id"), Alias::new("actor")])
                .from(Alias::new("changes"))
                .and_where(Expr::col(Alias::new("field")).eq("former_since"))
                .to_owned(),
        )
        .await
        .unwrap();
    let rows: Vec<(i64, String)> = history
        .iter()
        .map(|r| {
            (
                r.try_get_by_index(0).unwrap(),
                r.try_get_by_index(1).unwrap(),
            )
        })
        .collect();
    assert_eq!(rows, vec![(ids[0], "migration".to_string())]);
    db.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("qd.db").display());
    customers_who_left_get_their_date(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    let pg = qd_testkit::PgDatabase::create()
        .await
        .expect("PostgreSQL for the store tests");
    customers_who_left_get_their_date(pg.url()).await;
}
