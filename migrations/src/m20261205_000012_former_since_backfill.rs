//! Backfill of `customers.former_since` for customers who went from active back to
//! prospect (a new trial after leaving) before quietdesk recorded when they left. Since
//! then, that move sets `former_since`, and retention keeps such a customer's mail for the
//! former customer's term from that date. Without it, their mail was judged as a
//! prospect's request and could be deleted after 12 months instead of 7 years.
//!
//! A prospect with an `active_since` and no `former_since` was active once and left:
//! `former_since` becomes the date it became a prospect again (`status_since`), and
//! the change history records the backfill (actor `migration`).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Customers {
    Table,
    Id,
    Status,
    StatusSince,
    ActiveSince,
    FormerSince,
}

#[derive(DeriveIden)]
enum Changes {
    Table,
    EntityType,
    EntityId,
    Field,
    OldValue,
    NewValue,
    Actor,
    Reason,
    At,
}

fn left_while_unrecorded() -> Condition {
    Condition::all()
        .add(Expr::col(Customers::Status).eq("prospect"))
        .add(Expr::col(Customers::ActiveSince).is_not_null())
        .add(Expr::col(Customers::FormerSince).is_null())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let history = Query::select()
            .expr(Expr::val("customer"))
            .column(Customers::Id)
            .expr(Expr::val("former_since"))
            .expr(Expr::val(Option::<String>::None))
            .expr(Expr::col(Customers::StatusSince).cast_as(Alias::new("TEXT")))
            .expr(Expr::val("migration"))
            .expr(Expr::val(
                "backfill: active, then prospect again before this was recorded",
            ))
            .expr(Expr::current_timestamp())
            .from(Customers::Table)
            .cond_where(left_while_unrecorded())
            .to_owned();
        let insert = Query::insert()
            .into_table(Changes::Table)
            .columns([
                Changes::EntityType,
                Changes::EntityId,
                Changes::Field,
                Changes::OldValue,
                Changes::NewValue,
                Changes::Actor,
                Changes::Reason,
                Changes::At,
            ])
            .select_from(history)
            .map_err(|e| DbErr::Migration(e.to_string()))?
            .to_owned();
        m.exec_stmt(insert).await?;
        m.exec_stmt(
            Query::update()
                .table(Customers::Table)
                .value(Customers::FormerSince, Expr::col(Customers::StatusSince))
                .cond_where(left_while_unrecorded())
                .to_owned(),
        )
        .await
    }

    async fn down(&self, _m: &SchemaManager) -> Result<(), DbErr> {
        // The backfilled dates stay: they are what the customers' history says.
        Ok(())
    }
}
