use sea_orm::entity::prelude::*;

/// One acknowledgement queued for a sender, for the per-sender daily limit. The sender
/// is kept only as a hash (`crate::outbox::sender_hash`).
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "ack_log")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub sender_hash: String,
    pub ticket_id: Option<i64>,
    pub at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
