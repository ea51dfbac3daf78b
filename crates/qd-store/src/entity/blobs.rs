use sea_orm::entity::prelude::*;

/// A stored raw message: content-addressed by `digest` within a `scope` (the key owner),
/// written with `codec`; `data` holds the encoded bytes. See `crate::blob`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "blobs")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub digest: String,
    pub scope: String,
    pub codec: String,
    pub size: i64,
    pub stored_size: i64,
    pub data: Vec<u8>,
    pub created_at: DateTimeUtc,
    /// `qd_core::lookup_key(digest)`, what the index holds.
    pub digest_key: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
