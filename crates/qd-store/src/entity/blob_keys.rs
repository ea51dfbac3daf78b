use sea_orm::entity::prelude::*;

/// One blob scope's data key, sealed with the master key; `wrapped_key` is NULL once the
/// key was destroyed (the scope's data erased). See `crate::crypto`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "blob_keys")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub scope: String,
    pub wrapped_key: Option<Vec<u8>>,
    pub created_at: DateTimeUtc,
    pub destroyed_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
