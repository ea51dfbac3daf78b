//! `tickets.anonymised_at`: when an erasure that keeps statistics anonymised the ticket.
//! Such a ticket takes no new mail by its number (`[#QD-n]` in a subject): joining a new
//! message to it would tie the anonymised history to whoever wrote, most likely the
//! erased person again. Before this column, the ticket was recognised by its requester's
//! anonymised address, which misses a ticket anonymised through its customer.
//!
//! Backfill: tickets whose requester already has an anonymised address
//! (`erased-contact-<id>@erased.invalid`), stamped with their last activity.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tickets {
    Table,
    AnonymisedAt,
    RequesterId,
    LastActivityAt,
}

#[derive(DeriveIden)]
enum Contacts {
    Table,
    Id,
    Address,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Tickets::Table)
                .add_column(timestamp_with_time_zone_null(Tickets::AnonymisedAt))
                .to_owned(),
        )
        .await?;
        let erased = Query::select()
            .column(Contacts::Id)
            .from(Contacts::Table)
            .and_where(Expr::col(Contacts::Address).like("%@erased.invalid"))
            .to_owned();
        let backfill = Query::update()
            .table(Tickets::Table)
            .value(Tickets::AnonymisedAt, Expr::col(Tickets::LastActivityAt))
            .and_where(Expr::col(Tickets::RequesterId).in_subquery(erased))
            .to_owned();
        m.exec_stmt(backfill).await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Tickets::Table)
                .drop_column(Tickets::AnonymisedAt)
                .to_owned(),
        )
        .await
    }
}
