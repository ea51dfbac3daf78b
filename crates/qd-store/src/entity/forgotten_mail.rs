use sea_orm::entity::prelude::*;

/// The content hash and hashed Message-ID of a message the store deleted: the same mail is
/// not stored again
/// (see the migration `m20261205_000011_forgotten_mail`).
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "forgotten_mail")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// `qd_core::lookup_key(content_hash)`.
    pub content_key: i64,
    pub content_hash: String,
    /// `qd_core::lookup_key` of the Message-ID.
    pub message_id_key: Option<i64>,
    /// SHA-256 (hex) of the Message-ID: the id itself may name a person.
    pub message_id_hash: Option<String>,
    pub forgotten_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
