//! 64-bit lookup keys instead of indexes over long random text.
//!
//! The ingest path looks messages up by content hash and Message-ID, thread references by
//! the Message-ID they name, and blobs by digest. Those columns hold 40–100 random
//! characters; indexed as text, each index grew to 50–95 MB at a million messages, and
//! every insert dirtied a page of its own in each of them, which SQLite wrote to the WAL
//! and again at the checkpoint (the main cost of a large import). Each of these columns
//! now has a `…_key` column, `qd_core::lookup_key` of the text (the first 8 bytes of its
//! SHA-256), and the index is over the key. Lookups compare the full text of what they
//! find. The blobs' unique index over (digest, scope) becomes a plain index over the
//! digest's key: the writer finds existing blobs before it inserts.
//!
//! Existing rows get their keys here, in id order, a thousand at a time.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// One text column that gets a key column, and the index that moves from one to the other.
struct Keyed {
    table: &'static str,
    text: &'static str,
    key: &'static str,
    /// The text column may be NULL (then so is the key).
    nullable: bool,
    new_index: &'static str,
    /// The text index this migration replaces, for `down`.
    old_index: &'static str,
    old_cols: &'static [&'static str],
    old_unique: bool,
}

const KEYED: &[Keyed] = &[
    Keyed {
        table: "messages",
        text: "content_hash",
        key: "content_key",
        nullable: false,
        new_index: "ix_messages_content_key",
        old_index: "ix_messages_hash",
        old_cols: &["content_hash"],
        old_unique: false,
    },
    Keyed {
        table: "messages",
        text: "message_id",
        key: "message_id_key",
        nullable: true,
        new_index: "ix_messages_message_id_key",
        old_index: "ix_messages_message_id",
        old_cols: &["message_id"],
        old_unique: false,
    },
    Keyed {
        table: "thread_refs",
        text: "ref_id",
        key: "ref_key",
        nullable: false,
        new_index: "ix_thread_refs_ref_key",
        old_index: "ix_thread_refs_ref",
        old_cols: &["ref_id"],
        old_unique: false,
    },
    Keyed {
        table: "blobs",
        text: "digest",
        key: "digest_key",
        nullable: false,
        new_index: "ix_blobs_digest_key",
        old_index: "ux_blobs_digest_scope",
        old_cols: &["digest", "scope"],
        old_unique: true,
    },
];

const BACKFILL_ROWS: u64 = 1000;

/// Sets the key of every row of `k.table` to `lookup_key` of its text (NULL text: NULL
/// key).
async fn backfill(m: &SchemaManager<'_>, k: &Keyed) -> Result<(), DbErr> {
    let db = m.get_connection();
    let (table, id, text, key) = (
        Alias::new(k.table),
        Alias::new("id"),
        Alias::new(k.text),
        Alias::new(k.key),
    );
    let mut after = 0i64;
    loop {
        let select = Query::select()
            .columns([id.clone(), text.clone()])
            .from(table.clone())
            .and_where(Expr::col(id.clone()).gt(after))
            .order_by(id.clone(), Order::Asc)
            .limit(BACKFILL_ROWS)
            .to_owned();
        let rows = db.query_all(&select).await?;
        if rows.is_empty() {
            return Ok(());
        }
        for row in rows {
            let row_id: i64 = row.try_get_by_index(0)?;
            let value: Option<String> = row.try_get_by_index(1)?;
            after = row_id;
            let Some(value) = value else { continue };
            let update = Query::update()
                .table(table.clone())
                .value(key.clone(), qd_core::lookup_key(&value))
                .and_where(Expr::col(id.clone()).eq(row_id))
                .to_owned();
            db.execute(&update).await?;
        }
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for k in KEYED {
            // SQLite adds one column per ALTER TABLE.
            let mut col = ColumnDef::new(Alias::new(k.key));
            col.big_integer();
            if k.nullable {
                col.null();
            } else {
                col.not_null().default(0);
            }
            m.alter_table(
                Table::alter()
                    .table(Alias::new(k.table))
                    .add_column(&mut col)
                    .to_owned(),
            )
            .await?;
            backfill(m, k).await?;
            m.drop_index(
                Index::drop()
                    .name(k.old_index)
                    .table(Alias::new(k.table))
                    .to_owned(),
            )
            .await?;
            m.create_index(
                Index::create()
                    .name(k.new_index)
                    .table(Alias::new(k.table))
                    .col(Alias::new(k.key))
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for k in KEYED {
            m.drop_index(
                Index::drop()
                    .name(k.new_index)
                    .table(Alias::new(k.table))
                    .to_owned(),
            )
            .await?;
            let mut old = Index::create();
            old.name(k.old_index).table(Alias::new(k.table));
            for c in k.old_cols {
                old.col(Alias::new(*c));
            }
            if k.old_unique {
                old.unique();
            }
            m.create_index(old.to_owned()).await?;
            m.alter_table(
                Table::alter()
                    .table(Alias::new(k.table))
                    .drop_column(Alias::new(k.key))
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
