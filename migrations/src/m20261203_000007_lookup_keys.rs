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
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Messages {
    Table,
    Id,
    ContentHash,
    ContentKey,
    MessageId,
    MessageIdKey,
}

#[derive(DeriveIden, Clone, Copy)]
enum ThreadRefs {
    Table,
    Id,
    RefId,
    RefKey,
}

#[derive(DeriveIden, Clone, Copy)]
enum Blobs {
    Table,
    Id,
    Digest,
    DigestKey,
    Scope,
}

/// The indexes over the new key columns.
fn key_indexes() -> Vec<IndexCreateStatement> {
    vec![
        Index::create()
            .name("ix_messages_content_key")
            .table(Messages::Table)
            .col(Messages::ContentKey)
            .to_owned(),
        Index::create()
            .name("ix_messages_message_id_key")
            .table(Messages::Table)
            .col(Messages::MessageIdKey)
            .to_owned(),
        Index::create()
            .name("ix_thread_refs_ref_key")
            .table(ThreadRefs::Table)
            .col(ThreadRefs::RefKey)
            .to_owned(),
        Index::create()
            .name("ix_blobs_digest_key")
            .table(Blobs::Table)
            .col(Blobs::DigestKey)
            .to_owned(),
    ]
}

const BACKFILL_ROWS: u64 = 1000;

/// Sets `key_col = lookup_key(text_col)` on every row of `table` (NULL text: NULL key).
async fn backfill<T: IntoIden + Copy>(
    m: &SchemaManager<'_>,
    table: T,
    id_col: T,
    text_col: T,
    key_col: T,
) -> Result<(), DbErr> {
    let db = m.get_connection();
    let mut after = 0i64;
    loop {
        let select = Query::select()
            .columns([id_col, text_col])
            .from(table)
            .and_where(Expr::col(id_col).gt(after))
            .order_by(id_col, Order::Asc)
            .limit(BACKFILL_ROWS)
            .to_owned();
        let rows = db.query_all(&select).await?;
        if rows.is_empty() {
            return Ok(());
        }
        for row in rows {
            let id: i64 = row.try_get_by_index(0)?;
            let text: Option<String> = row.try_get_by_index(1)?;
            after = id;
            let Some(text) = text else { continue };
            let update = Query::update()
                .table(table)
                .value(key_col, qd_core::lookup_key(&text))
                .and_where(Expr::col(id_col).eq(id))
                .to_owned();
            db.execute(&update).await?;
        }
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        let columns = [
            (
                Messages::Table.into_iden(),
                big_integer(Messages::ContentKey).default(0).to_owned(),
            ),
            (
                Messages::Table.into_iden(),
                big_integer_null(Messages::MessageIdKey).to_owned(),
            ),
            (
                ThreadRefs::Table.into_iden(),
                big_integer(ThreadRefs::RefKey).default(0).to_owned(),
            ),
            (
                Blobs::Table.into_iden(),
                big_integer(Blobs::DigestKey).default(0).to_owned(),
            ),
        ];
        for (table, mut col) in columns {
            m.alter_table(Table::alter().table(table).add_column(&mut col).to_owned())
                .await?;
        }
        backfill(
            m,
            Messages::Table,
            Messages::Id,
            Messages::ContentHash,
            Messages::ContentKey,
        )
        .await?;
        backfill(
            m,
            Messages::Table,
            Messages::Id,
            Messages::MessageId,
            Messages::MessageIdKey,
        )
        .await?;
        backfill(
            m,
            ThreadRefs::Table,
            ThreadRefs::Id,
            ThreadRefs::RefId,
            ThreadRefs::RefKey,
        )
        .await?;
        backfill(m, Blobs::Table, Blobs::Id, Blobs::Digest, Blobs::DigestKey).await?;
        for name in [
            "ix_messages_hash",
            "ix_messages_message_id",
            "ix_thread_refs_ref",
            "ux_blobs_digest_scope",
        ] {
            let table = match name {
                "ix_thread_refs_ref" => ThreadRefs::Table.into_iden(),
                "ux_blobs_digest_scope" => Blobs::Table.into_iden(),
                _ => Messages::Table.into_iden(),
            };
            m.drop_index(Index::drop().name(name).table(table).to_owned())
                .await?;
        }
        for index in key_indexes() {
            m.create_index(index).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for (name, table) in [
            ("ix_messages_content_key", Messages::Table.into_iden()),
            ("ix_messages_message_id_key", Messages::Table.into_iden()),
            ("ix_thread_refs_ref_key", ThreadRefs::Table.into_iden()),
            ("ix_blobs_digest_key", Blobs::Table.into_iden()),
        ] {
            m.drop_index(Index::drop().name(name).table(table).to_owned())
                .await?;
        }
        m.create_index(
            Index::create()
                .name("ix_messages_hash")
                .table(Messages::Table)
                .col(Messages::ContentHash)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_messages_message_id")
                .table(Messages::Table)
                .col(Messages::MessageId)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_thread_refs_ref")
                .table(ThreadRefs::Table)
                .col(ThreadRefs::RefId)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_blobs_digest_scope")
                .table(Blobs::Table)
                .col(Blobs::Digest)
                .col(Blobs::Scope)
                .unique()
                .to_owned(),
        )
        .await?;
        for (table, col) in [
            (
                Messages::Table.into_iden(),
                Messages::ContentKey.into_iden(),
            ),
            (
                Messages::Table.into_iden(),
                Messages::MessageIdKey.into_iden(),
            ),
            (
                ThreadRefs::Table.into_iden(),
                ThreadRefs::RefKey.into_iden(),
            ),
            (Blobs::Table.into_iden(), Blobs::DigestKey.into_iden()),
        ] {
            m.alter_table(Table::alter().table(table).drop_column(col).to_owned())
                .await?;
        }
        Ok(())
    }
}
