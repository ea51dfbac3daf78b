use sea_orm::entity::prelude::*;

/// A source position a checkpoint covers whose mail was not stored and must stay where
/// it is (see [`crate::HeldPosition`]).
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "ingest_held")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub source: String,
    pub uidvalidity: i64,
    pub uid: i64,
    pub reason: String,
    pub held_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
