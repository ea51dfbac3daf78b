//! `forgotten_mail`: the content hash and the hashed Message-ID of every message the
//! store deleted or anonymised (retention, quarantine expiry, erasure). A message is
//! known by its content hash (SHA-256 over its identity headers and body,
//! computed by `qd_mail`), so once its row is gone the duplicate check no longer
//! recognises it: a rescan of a mailbox that keeps its mail (`after = keep` or a flag)
//! after a UIDVALIDITY change, or the same archive imported again, brought deleted mail
//! back. The store refuses a message whose content hash is listed here; a rescan also
//! refuses one whose Message-ID is (a server may hand mail back with rewritten headers).
//!
//! Nothing readable is kept: the content hash cannot be turned back into the mail, and
//! the Message-ID is kept only as its SHA-256. Someone who already holds a message, or
//! its Message-ID, can confirm that we once had it; nobody can learn more. The rows are
//! kept for good, ~150 bytes each, because a server may keep the mail for good too.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ForgottenMail {
    Table,
    Id,
    ContentKey,
    ContentHash,
    MessageIdKey,
    MessageIdHash,
    ForgottenAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(ForgottenMail::Table)
                .col(big_pk_auto(ForgottenMail::Id))
                .col(big_integer(ForgottenMail::ContentKey))
                .col(string(ForgottenMail::ContentHash))
                .col(big_integer_null(ForgottenMail::MessageIdKey))
                .col(string_null(ForgottenMail::MessageIdHash))
                .col(timestamp_with_time_zone(ForgottenMail::ForgottenAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_forgotten_mail_key")
                .table(ForgottenMail::Table)
                .col(ForgottenMail::ContentKey)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_forgotten_mail_message_id")
                .table(ForgottenMail::Table)
                .col(ForgottenMail::MessageIdKey)
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(ForgottenMail::Table).to_owned())
            .await
    }
}
