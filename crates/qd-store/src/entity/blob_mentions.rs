use sea_orm::entity::prelude::*;

/// A stored raw mail (`blob_id`) names an address outside From, To and Cc:
/// `address_key` is `qd_core::lookup_key` of the lowercase address.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "blob_mentions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub blob_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub address_key: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
