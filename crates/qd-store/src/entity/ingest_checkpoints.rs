use sea_orm::entity::prelude::*;

/// How far a source has been ingested: for IMAP `(mailbox, uidvalidity, last uid)`, for
/// file imports the last committed position (a path or an mbox byte offset).
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "ingest_checkpoints")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub source: String,
    pub uidvalidity: Option<i64>,
    pub position: String,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
