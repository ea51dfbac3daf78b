//! `blob_mentions`: which addresses each stored raw mail names outside From, To and Cc
//! (Reply-To, Bcc, Delivered-To, Received `for`, ...; `qd_core::mentioned_addresses`),
//! as `qd_core::lookup_key` of the lowercase address. An erasure finds the other people's
//! mail that names the erased person there by index, without opening every blob. A row
//! goes with its blob (foreign key, cascade).
//!
//! No backfill here: the blobs are sealed, and a migration has no master key. The
//! counter `blob_mentions_unread_below` records that blobs with a lower id were stored
//! before this table; `Store::record_mentions` (run by `quietdesk migrate` and before
//! every erasure) reads them and moves the counter down to 0.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum BlobMentions {
    Table,
    BlobId,
    AddressKey,
}

#[derive(DeriveIden)]
enum Blobs {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Counters {
    Table,
    Name,
    Value,
}

/// The counter `Store::record_mentions` works down.
pub const UNREAD_BELOW: &str = "blob_mentions_unread_below";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(BlobMentions::Table)
                .col(big_integer(BlobMentions::BlobId))
                .col(big_integer(BlobMentions::AddressKey))
                .primary_key(
                    Index::create()
                        .col(BlobMentions::BlobId)
                        .col(BlobMentions::AddressKey),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(BlobMentions::Table, BlobMentions::BlobId)
                        .to(Blobs::Table, Blobs::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_blob_mentions_address")
                .table(BlobMentions::Table)
                .col(BlobMentions::AddressKey)
                .to_owned(),
        )
        .await?;
        let below = Query::select()
            .expr(Expr::val(UNREAD_BELOW))
            .expr(Expr::col(Blobs::Id).max().add(1).if_null(0))
            .from(Blobs::Table)
            .to_owned();
        let insert = Query::insert()
            .into_table(Counters::Table)
            .columns([Counters::Name, Counters::Value])
            .select_from(below)
            .map_err(|e| DbErr::Migration(e.to_string()))?
            .to_owned();
        m.exec_stmt(insert).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.exec_stmt(
            Query::delete()
                .from_table(Counters::Table)
                .and_where(Expr::col(Counters::Name).eq(UNREAD_BELOW))
                .to_owned(),
        )
        .await?;
        m.drop_table(Table::drop().table(BlobMentions::Table).to_owned())
            .await
    }
}
