use sea_orm::entity::prelude::*;

/// One message taught to the filter by staff: the `step` it added to the weight of each
/// token in `tokens` and `personal_tokens` (hashes, 8 bytes each, little-endian); `personal_tokens` and
/// `message_id` are cleared when the message is deleted.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "filter_feedback")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub message_id: Option<i64>,
    pub label: String,
    pub staff: String,
    pub created_at: DateTimeUtc,
    pub step: f64,
    pub tokens: Vec<u8>,
    pub personal_tokens: Option<Vec<u8>>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
