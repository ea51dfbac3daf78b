use sea_orm::entity::prelude::*;

/// The learned model's totals (one row, `id = 1`); `generation` goes up with every
/// change so a running process knows when to reload.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "filter_model")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i32,
    pub spam_messages: i32,
    pub ham_messages: i32,
    pub generation: i64,
    pub updated_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
