//! Privacy: per-scope blob keys (crypto-shredding), the rectification history, legal hold
//! and retention class on tickets.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum BlobKeys {
    Table,
    Id,
    Scope,
    /// The scope's data key, sealed with the master key; NULL once destroyed.
    WrappedKey,
    CreatedAt,
    DestroyedAt,
}

#[derive(DeriveIden)]
enum Changes {
    Table,
    Id,
    EntityType,
    EntityId,
    Field,
    OldValue,
    NewValue,
    Actor,
    Reason,
    At,
}

#[derive(DeriveIden)]
enum Tickets {
    Table,
    LegalHold,
    RetentionClass,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(BlobKeys::Table)
                .col(big_pk_auto(BlobKeys::Id))
                .col(string_uniq(BlobKeys::Scope))
                .col(blob_null(BlobKeys::WrappedKey))
                .col(timestamp_with_time_zone(BlobKeys::CreatedAt))
                .col(timestamp_with_time_zone_null(BlobKeys::DestroyedAt))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Changes::Table)
                .col(big_pk_auto(Changes::Id))
                .col(string(Changes::EntityType))
                .col(big_integer(Changes::EntityId))
                .col(string(Changes::Field))
                .col(text_null(Changes::OldValue))
                .col(text_null(Changes::NewValue))
                .col(string(Changes::Actor))
                .col(text_null(Changes::Reason))
                .col(timestamp_with_time_zone(Changes::At))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_changes_entity")
                .table(Changes::Table)
                .col(Changes::EntityType)
                .col(Changes::EntityId)
                .to_owned(),
        )
        .await?;
        // SQLite adds one column per ALTER TABLE.
        m.alter_table(
            Table::alter()
                .table(Tickets::Table)
                .add_column(boolean(Tickets::LegalHold).default(false))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Tickets::Table)
                .add_column(string_null(Tickets::RetentionClass))
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Tickets::Table)
                .drop_column(Tickets::RetentionClass)
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Tickets::Table)
                .drop_column(Tickets::LegalHold)
                .to_owned(),
        )
        .await?;
        m.drop_table(Table::drop().table(Changes::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(BlobKeys::Table).to_owned())
            .await?;
        Ok(())
    }
}
