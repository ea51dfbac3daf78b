//! PostgreSQL full-text search over the same messages, for the search benchmark only:
//! `quietdesk bench search --pg URL` compares tantivy with `to_tsvector` + GIN. It lives
//! here because only this crate talks to databases. Not used by the product.

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement, Value,
};

use crate::{Error, Result, Store};

/// A benchmark table `bench_fts` in a PostgreSQL database.
pub struct PgFts {
    db: DatabaseConnection,
}

/// The four query classes of the benchmark.
#[derive(Debug, Clone)]
pub enum FtsQuery {
    Terms(Vec<String>),
    Phrase(Vec<String>),
    FromAndTerm { from: String, term: String },
}

impl PgFts {
    /// Connects and (re)creates the table, copying every message of `store` into it,
    /// then builds the GIN index. Returns the number of rows.
    pub async fn load(url: &str, store: &Store) -> Result<(PgFts, u64)> {
        // Statement logging would print message text: keep it off, as the store does.
        let mut opts = ConnectOptions::new(url.to_string());
        opts.sqlx_logging(false);
        let db = Database::connect(opts)
            .await
            .map_err(|source| Error::Connect {
                url: crate::redact_url(url),
                source,
            })?;
        db.execute_unprepared(
            "DROP TABLE IF EXISTS bench_fts;
             CREATE TABLE bench_fts (id bigint PRIMARY KEY, subject text, body text, from_addr text,
                tsv tsvector GENERATED ALWAYS AS
                  (to_tsvector('simple', coalesce(subject,'') || ' ' || coalesce(body,''))) STORED)",
        )
        .await?;
        let mut after = 0i64;
        let mut rows = 0u64;
        loop {
            let ids = store.message_ids_after(after, 2_000).await?;
            let Some(&last) = ids.last() else { break };
            after = last;
            let docs = store.index_rows(&ids).await?;
            let mut sql =
                String::from("INSERT INTO bench_fts (id, subject, body, from_addr) VALUES ");
            let mut values: Vec<Value> = Vec::with_capacity(docs.len() * 4);
            for (i, d) in docs.iter().enumerate() {
                if i > 0 {
                    sql.push(',');
                }
                let b = i * 4;
                sql.push_str(&format!("(${},${},${},${})", b + 1, b + 2, b + 3, b + 4));
                values.push(d.message_db_id.into());
                values.push(d.subject.replace('\0', "").into());
                values.push(d.body.replace('\0', "").into());
                values.push(d.from.to_lowercase().into());
            }
            if !docs.is_empty() {
                db.execute_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    sql,
                    values,
                ))
                .await?;
                rows += docs.len() as u64;
            }
        }
        db.execute_unprepared(
            "CREATE INDEX bench_fts_tsv ON bench_fts USING GIN (tsv);
             CREATE INDEX bench_fts_from ON bench_fts (from_addr text_pattern_ops);
             ANALYZE bench_fts",
        )
        .await?;
        Ok((PgFts { db }, rows))
    }

    /// Runs one query (top 10 by ts_rank); returns the number of hits.
    pub async fn query(&self, q: &FtsQuery) -> Result<usize> {
        let (sql, values): (&str, Vec<Value>) = match q {
            FtsQuery::Terms(t) => (
                "SELECT id FROM bench_fts, plainto_tsquery('simple', $1) q WHERE tsv @@ q
                 ORDER BY ts_rank(tsv, q) DESC LIMIT 10",
                vec![t.join(" ").into()],
            ),
            FtsQuery::Phrase(t) => (
                "SELECT id FROM bench_fts, phraseto_tsquery('simple', $1) q WHERE tsv @@ q
                 ORDER BY ts_rank(tsv, q) DESC LIMIT 10",
                vec![t.join(" ").into()],
            ),
            FtsQuery::FromAndTerm { from, term } => (
                "SELECT id FROM bench_fts, plainto_tsquery('simple', $2) q
                 WHERE tsv @@ q AND from_addr LIKE $1
                 ORDER BY ts_rank(tsv, q) DESC LIMIT 10",
                vec![
                    format!("%{}%", from.to_lowercase()).into(),
                    term.clone().into(),
                ],
            ),
        };
        let rows = self
            .db
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                sql,
                values,
            ))
            .await?;
        Ok(rows.len())
    }
}
