use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "customers")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub name: Option<String>,
    #[sea_orm(unique)]
    pub email: String,
    pub status: String,
    pub status_since: DateTimeUtc,
    pub active_since: Option<DateTimeUtc>,
    pub former_since: Option<DateTimeUtc>,
    pub language: Option<String>,
    pub legal_hold: bool,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
