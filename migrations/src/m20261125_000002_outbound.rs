//! Outgoing mail: the `outbox` the outbound worker drains, and `ack_log`, which holds the
//! per-sender daily limit of acknowledgements (RFC 3834 §2: an automatic responder must
//! not answer the same sender over and over).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// One message to send. `raw` is the rendered message (cleared once it is sent, when
/// the copy on the ticket is the record); `rcpt_to` is a JSON array of envelope
/// recipients. `status` is `queued`, `sending`, `sent` or `failed`; a `sending` row
/// whose `claimed_until` has passed belongs to a worker that died and is claimed again.
#[derive(DeriveIden)]
enum Outbox {
    Table,
    Id,
    Kind,
    TicketId,
    MessageId,
    InReplyTo,
    References,
    MailFrom,
    RcptTo,
    Subject,
    Language,
    Raw,
    Status,
    Attempts,
    NextAttemptAt,
    ClaimedUntil,
    LastError,
    CreatedAt,
    SentAt,
    FailedAt,
    SentMessageDbId,
}

/// One acknowledgement sent (queued) to a sender; `sender_hash` is a SHA-256 of the
/// normalised address, so this table holds no address.
#[derive(DeriveIden)]
enum AckLog {
    Table,
    Id,
    SenderHash,
    TicketId,
    At,
}

#[derive(DeriveIden)]
enum Tickets {
    Table,
    Id,
}

fn index(name: &str, table: impl IntoIden, cols: &[&'static str]) -> IndexCreateStatement {
    let mut stmt = Index::create();
    stmt.name(name).table(table);
    for c in cols {
        stmt.col(Alias::new(*c));
    }
    stmt
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Outbox::Table)
                .col(big_pk_auto(Outbox::Id))
                .col(string(Outbox::Kind))
                .col(big_integer_null(Outbox::TicketId))
                .col(text(Outbox::MessageId))
                .col(text_null(Outbox::InReplyTo))
                .col(text_null(Outbox::References))
                .col(text(Outbox::MailFrom))
                .col(text(Outbox::RcptTo))
                .col(text(Outbox::Subject))
                .col(string_null(Outbox::Language))
                .col(blob_null(Outbox::Raw))
                .col(string(Outbox::Status))
                .col(integer(Outbox::Attempts).default(0))
                .col(timestamp_with_time_zone(Outbox::NextAttemptAt))
                .col(timestamp_with_time_zone_null(Outbox::ClaimedUntil))
                .col(text_null(Outbox::LastError))
                .col(timestamp_with_time_zone(Outbox::CreatedAt))
                .col(timestamp_with_time_zone_null(Outbox::SentAt))
                .col(timestamp_with_time_zone_null(Outbox::FailedAt))
                .col(big_integer_null(Outbox::SentMessageDbId))
                // Erasing a ticket erases what we were about to send about it.
                .foreign_key(
                    ForeignKey::create()
                        .from(Outbox::Table, Outbox::TicketId)
                        .to(Tickets::Table, Tickets::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            index("ux_outbox_message_id", Outbox::Table, &["message_id"])
                .unique()
                .to_owned(),
        )
        .await?;
        // The worker's claim query: due rows by status and time.
        m.create_index(index(
            "ix_outbox_due",
            Outbox::Table,
            &["status", "next_attempt_at"],
        ))
        .await?;
        m.create_index(index("ix_outbox_ticket", Outbox::Table, &["ticket_id"]))
            .await?;

        m.create_table(
            Table::create()
                .table(AckLog::Table)
                .col(big_pk_auto(AckLog::Id))
                .col(string(AckLog::SenderHash))
                .col(big_integer_null(AckLog::TicketId))
                .col(timestamp_with_time_zone(AckLog::At))
                .foreign_key(
                    ForeignKey::create()
                        .from(AckLog::Table, AckLog::TicketId)
                        .to(Tickets::Table, Tickets::Id)
                        .on_delete(ForeignKeyAction::SetNull),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "ix_ack_log_sender_at",
            AckLog::Table,
            &["sender_hash", "at"],
        ))
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [AckLog::Table.into_iden(), Outbox::Table.into_iden()] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}
