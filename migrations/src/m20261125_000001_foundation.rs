//! Customers, contacts, tickets, messages, attachments, raw-mail blobs, audit events,
//! ingest checkpoints, the search queue and named counters.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Customers {
    Table,
    Id,
    Name,
    Email,
    Status,
    StatusSince,
    ActiveSince,
    FormerSince,
    Language,
    LegalHold,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Contacts {
    Table,
    Id,
    Address,
    DisplayName,
    CustomerId,
    CreatedAt,
    LastSeenAt,
}

#[derive(DeriveIden)]
enum Tickets {
    Table,
    Id,
    Number,
    Subject,
    Status,
    Team,
    Assignee,
    RequesterId,
    CustomerId,
    CreatedAt,
    LastActivityAt,
}

#[derive(DeriveIden)]
enum TicketTags {
    Table,
    TicketId,
    Tag,
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    Id,
    TicketId,
    ContactId,
    Direction,
    MessageId,
    InReplyTo,
    References,
    FromAddr,
    FromName,
    ToAddrs,
    CcAddrs,
    Date,
    ReceivedAt,
    Subject,
    BodyText,
    BodyHtml,
    Size,
    ContentHash,
    HasAttachments,
    VerdictClass,
    VerdictScore,
    VerdictTags,
    Quarantined,
    Defects,
    Source,
    SourcePosition,
    BlobId,
}

/// Message-IDs that stored messages refer to (In-Reply-To, References), with the ticket
/// of the referring message: lets a parent that arrives after its reply join the reply's
/// ticket.
#[derive(DeriveIden)]
enum ThreadRefs {
    Table,
    Id,
    RefId,
    TicketId,
}

#[derive(DeriveIden)]
enum Attachments {
    Table,
    Id,
    MessageId,
    Filename,
    ContentType,
    Size,
    Digest,
    Quarantined,
}

#[derive(DeriveIden)]
enum Blobs {
    Table,
    Id,
    Digest,
    Scope,
    Codec,
    Size,
    StoredSize,
    Data,
    CreatedAt,
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Id,
    At,
    Actor,
    Action,
    ObjectType,
    ObjectId,
    Detail,
}

#[derive(DeriveIden)]
enum IngestCheckpoints {
    Table,
    Id,
    Source,
    Uidvalidity,
    Position,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum SearchQueue {
    Table,
    Id,
    MessageDbId,
    Op,
    EnqueuedAt,
}

#[derive(DeriveIden)]
enum Counters {
    Table,
    Name,
    Value,
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
                .table(Customers::Table)
                .col(big_pk_auto(Customers::Id))
                .col(string_null(Customers::Name))
                .col(string_uniq(Customers::Email))
                .col(string(Customers::Status))
                .col(timestamp_with_time_zone(Customers::StatusSince))
                .col(timestamp_with_time_zone_null(Customers::ActiveSince))
                .col(timestamp_with_time_zone_null(Customers::FormerSince))
                .col(string_null(Customers::Language))
                .col(boolean(Customers::LegalHold).default(false))
                .col(timestamp_with_time_zone(Customers::CreatedAt))
                .col(timestamp_with_time_zone(Customers::UpdatedAt))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Contacts::Table)
                .col(big_pk_auto(Contacts::Id))
                .col(string_uniq(Contacts::Address))
                .col(string_null(Contacts::DisplayName))
                .col(big_integer_null(Contacts::CustomerId))
                .col(timestamp_with_time_zone(Contacts::CreatedAt))
                .col(timestamp_with_time_zone(Contacts::LastSeenAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(Contacts::Table, Contacts::CustomerId)
                        .to(Customers::Table, Customers::Id)
                        .on_delete(ForeignKeyAction::SetNull),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "ix_contacts_customer",
            Contacts::Table,
            &["customer_id"],
        ))
        .await?;

        m.create_table(
            Table::create()
                .table(Tickets::Table)
                .col(big_pk_auto(Tickets::Id))
                .col(big_integer_uniq(Tickets::Number))
                .col(text(Tickets::Subject))
                .col(string(Tickets::Status))
                .col(string_null(Tickets::Team))
                .col(string_null(Tickets::Assignee))
                .col(big_integer_null(Tickets::RequesterId))
                .col(big_integer_null(Tickets::CustomerId))
                .col(timestamp_with_time_zone(Tickets::CreatedAt))
                .col(timestamp_with_time_zone(Tickets::LastActivityAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(Tickets::Table, Tickets::RequesterId)
                        .to(Contacts::Table, Contacts::Id)
                        .on_delete(ForeignKeyAction::SetNull),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(Tickets::Table, Tickets::CustomerId)
                        .to(Customers::Table, Customers::Id)
                        .on_delete(ForeignKeyAction::SetNull),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "ix_tickets_requester",
            Tickets::Table,
            &["requester_id"],
        ))
        .await?;
        m.create_index(index(
            "ix_tickets_customer",
            Tickets::Table,
            &["customer_id"],
        ))
        .await?;
        m.create_index(index(
            "ix_tickets_last_activity",
            Tickets::Table,
            &["last_activity_at"],
        ))
        .await?;

        m.create_table(
            Table::create()
                .table(TicketTags::Table)
                .col(big_integer(TicketTags::TicketId))
                .col(string(TicketTags::Tag))
                .primary_key(
                    Index::create()
                        .col(TicketTags::TicketId)
                        .col(TicketTags::Tag),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(TicketTags::Table, TicketTags::TicketId)
                        .to(Tickets::Table, Tickets::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Blobs::Table)
                .col(big_pk_auto(Blobs::Id))
                .col(string(Blobs::Digest))
                .col(string(Blobs::Scope))
                .col(string(Blobs::Codec))
                .col(big_integer(Blobs::Size))
                .col(big_integer(Blobs::StoredSize))
                .col(blob(Blobs::Data))
                .col(timestamp_with_time_zone(Blobs::CreatedAt))
                .to_owned(),
        )
        .await?;
        // Digest first: the batch writer looks blobs up by digest alone.
        m.create_index(
            index("ux_blobs_digest_scope", Blobs::Table, &["digest", "scope"])
                .unique()
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Messages::Table)
                .col(big_pk_auto(Messages::Id))
                .col(big_integer(Messages::TicketId))
                .col(big_integer_null(Messages::ContactId))
                .col(string(Messages::Direction))
                .col(text_null(Messages::MessageId))
                .col(text_null(Messages::InReplyTo))
                .col(text_null(Messages::References))
                .col(text_null(Messages::FromAddr))
                .col(text_null(Messages::FromName))
                .col(text(Messages::ToAddrs))
                .col(text(Messages::CcAddrs))
                .col(timestamp_with_time_zone_null(Messages::Date))
                .col(timestamp_with_time_zone(Messages::ReceivedAt))
                .col(text(Messages::Subject))
                .col(text(Messages::BodyText))
                .col(text_null(Messages::BodyHtml))
                .col(big_integer(Messages::Size))
                .col(string(Messages::ContentHash))
                .col(boolean(Messages::HasAttachments))
                .col(string_null(Messages::VerdictClass))
                .col(double_null(Messages::VerdictScore))
                .col(text_null(Messages::VerdictTags))
                .col(boolean(Messages::Quarantined).default(false))
                .col(text(Messages::Defects))
                .col(string_null(Messages::Source))
                .col(text_null(Messages::SourcePosition))
                .col(big_integer_null(Messages::BlobId))
                .foreign_key(
                    ForeignKey::create()
                        .from(Messages::Table, Messages::TicketId)
                        .to(Tickets::Table, Tickets::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(Messages::Table, Messages::ContactId)
                        .to(Contacts::Table, Contacts::Id)
                        .on_delete(ForeignKeyAction::SetNull),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(Messages::Table, Messages::BlobId)
                        .to(Blobs::Table, Blobs::Id)
                        .on_delete(ForeignKeyAction::SetNull),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(index("ix_messages_ticket", Messages::Table, &["ticket_id"]))
            .await?;
        m.create_index(index(
            "ix_messages_message_id",
            Messages::Table,
            &["message_id"],
        ))
        .await?;
        m.create_index(index(
            "ix_messages_hash",
            Messages::Table,
            &["content_hash"],
        ))
        .await?;
        m.create_index(index(
            "ix_messages_contact",
            Messages::Table,
            &["contact_id"],
        ))
        .await?;

        m.create_table(
            Table::create()
                .table(ThreadRefs::Table)
                .col(big_pk_auto(ThreadRefs::Id))
                .col(text(ThreadRefs::RefId))
                .col(big_integer(ThreadRefs::TicketId))
                .foreign_key(
                    ForeignKey::create()
                        .from(ThreadRefs::Table, ThreadRefs::TicketId)
                        .to(Tickets::Table, Tickets::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(index("ix_thread_refs_ref", ThreadRefs::Table, &["ref_id"]))
            .await?;

        m.create_table(
            Table::create()
                .table(Attachments::Table)
                .col(big_pk_auto(Attachments::Id))
                .col(big_integer(Attachments::MessageId))
                .col(text_null(Attachments::Filename))
                .col(string(Attachments::ContentType))
                .col(big_integer(Attachments::Size))
                .col(string(Attachments::Digest))
                .col(boolean(Attachments::Quarantined).default(false))
                .foreign_key(
                    ForeignKey::create()
                        .from(Attachments::Table, Attachments::MessageId)
                        .to(Messages::Table, Messages::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "ix_attachments_message",
            Attachments::Table,
            &["message_id"],
        ))
        .await?;

        m.create_table(
            Table::create()
                .table(AuditEvents::Table)
                .col(big_pk_auto(AuditEvents::Id))
                .col(timestamp_with_time_zone(AuditEvents::At))
                .col(string(AuditEvents::Actor))
                .col(string(AuditEvents::Action))
                .col(string(AuditEvents::ObjectType))
                .col(big_integer_null(AuditEvents::ObjectId))
                .col(text_null(AuditEvents::Detail))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "ix_audit_object",
            AuditEvents::Table,
            &["object_type", "object_id"],
        ))
        .await?;

        m.create_table(
            Table::create()
                .table(IngestCheckpoints::Table)
                .col(big_pk_auto(IngestCheckpoints::Id))
                .col(string_uniq(IngestCheckpoints::Source))
                .col(big_integer_null(IngestCheckpoints::Uidvalidity))
                .col(text(IngestCheckpoints::Position))
                .col(timestamp_with_time_zone(IngestCheckpoints::UpdatedAt))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(SearchQueue::Table)
                .col(big_pk_auto(SearchQueue::Id))
                .col(big_integer(SearchQueue::MessageDbId))
                .col(string(SearchQueue::Op))
                .col(timestamp_with_time_zone(SearchQueue::EnqueuedAt))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Counters::Table)
                .col(string(Counters::Name).primary_key())
                .col(big_integer(Counters::Value))
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            Counters::Table.into_iden(),
            SearchQueue::Table.into_iden(),
            IngestCheckpoints::Table.into_iden(),
            AuditEvents::Table.into_iden(),
            Attachments::Table.into_iden(),
            ThreadRefs::Table.into_iden(),
            Messages::Table.into_iden(),
            Blobs::Table.into_iden(),
            TicketTags::Table.into_iden(),
            Tickets::Table.into_iden(),
            Contacts::Table.into_iden(),
            Customers::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}
