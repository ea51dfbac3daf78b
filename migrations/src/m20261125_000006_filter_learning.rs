//! What the filter learns from staff feedback ("mark as spam / not spam", "release as not
//! spam"), kept so it survives a restart and so it can be taken back.
//!
//! - `filter_tokens`: the learned model (online logistic regression), one row per token
//!   hash (a 64-bit hash of a header/structure token, never text) with its weight.
//! - `filter_model`: one row (`id = 1`) with the number of messages learned per class and
//!   a generation that goes up with every change, so a running `serve` knows to reload.
//! - `filter_feedback`: one row per message taught, with the step it added to the
//!   weights (`step`), the token hashes it added it to (`tokens`) and, apart, the hashes
//!   that name a person (`personal_tokens`: sender addresses). When the message is deleted (retention, erasure) its personal tokens are
//!   unlearned and forgotten and the link to the message is cut; the structural tokens
//!   stay, as anonymous statistics, so the filter does not forget spam after 30 days.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum FilterTokens {
    Table,
    Hash,
    Weight,
}

#[derive(DeriveIden)]
enum FilterModel {
    Table,
    Id,
    SpamMessages,
    HamMessages,
    Generation,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum FilterFeedback {
    Table,
    Id,
    MessageId,
    Label,
    Staff,
    CreatedAt,
    Step,
    Tokens,
    PersonalTokens,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(FilterTokens::Table)
                .col(big_integer(FilterTokens::Hash).primary_key())
                .col(double(FilterTokens::Weight).default(0.0))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(FilterModel::Table)
                .col(integer(FilterModel::Id).primary_key())
                .col(integer(FilterModel::SpamMessages).default(0))
                .col(integer(FilterModel::HamMessages).default(0))
                .col(big_integer(FilterModel::Generation).default(0))
                .col(timestamp_with_time_zone_null(FilterModel::UpdatedAt))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(FilterFeedback::Table)
                .col(big_pk_auto(FilterFeedback::Id))
                .col(big_integer_null(FilterFeedback::MessageId))
                .col(string(FilterFeedback::Label))
                .col(string(FilterFeedback::Staff))
                .col(timestamp_with_time_zone(FilterFeedback::CreatedAt))
                .col(double(FilterFeedback::Step))
                .col(blob(FilterFeedback::Tokens))
                .col(blob_null(FilterFeedback::PersonalTokens))
                .to_owned(),
        )
        .await?;
        // Deleting messages looks their feedback up by message.
        m.create_index(
            Index::create()
                .name("ix_filter_feedback_message")
                .table(FilterFeedback::Table)
                .col(FilterFeedback::MessageId)
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in ["filter_feedback", "filter_model", "filter_tokens"] {
            m.drop_table(Table::drop().table(Alias::new(t)).to_owned())
                .await?;
        }
        Ok(())
    }
}
