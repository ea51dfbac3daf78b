use sea_orm::entity::prelude::*;

/// A Message-ID some stored message refers to, and that message's ticket.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "thread_refs")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub ref_id: String,
    pub ticket_id: i64,
    /// `qd_core::lookup_key(ref_id)`, what the index holds.
    pub ref_key: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
