//! `ingest_held`: source positions that a checkpoint covers but whose mail was not
//! stored (over the size limit, not returned by the server, not preparable). They are
//! written in the transaction that advances the checkpoint past them, so the pass that
//! re-applies the after-ingest action after a crash (move or delete everything at or
//! below the checkpoint) can leave exactly these in the mailbox. Before, it relied on an
//! IMAP keyword set afterwards, best effort, and a crash or a server without keywords
//! let it delete mail that was never stored.
//!
//! No personal data: a source key (mailbox and folder names from the configuration), a
//! UIDVALIDITY, a UID and a fixed reason.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum IngestHeld {
    Table,
    Id,
    Source,
    Uidvalidity,
    Uid,
    Reason,
    HeldAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(IngestHeld::Table)
                .col(big_pk_auto(IngestHeld::Id))
                .col(string(IngestHeld::Source))
                .col(big_integer(IngestHeld::Uidvalidity))
                .col(big_integer(IngestHeld::Uid))
                .col(string(IngestHeld::Reason))
                .col(timestamp_with_time_zone(IngestHeld::HeldAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_ingest_held_position")
                .table(IngestHeld::Table)
                .col(IngestHeld::Source)
                .col(IngestHeld::Uidvalidity)
                .col(IngestHeld::Uid)
                .unique()
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(IngestHeld::Table).to_owned())
            .await
    }
}
