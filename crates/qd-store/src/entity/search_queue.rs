use sea_orm::entity::prelude::*;

/// Durable work for the search indexer: `op` is `upsert` or `delete` of one message.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "search_queue")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub message_db_id: i64,
    pub op: String,
    pub enqueued_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
