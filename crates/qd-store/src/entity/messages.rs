use sea_orm::entity::prelude::*;

/// One message of a ticket. Address lists and id lists are stored as JSON arrays of
/// strings; `defects` and `verdict_tags` as JSON too.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "messages")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub ticket_id: i64,
    pub contact_id: Option<i64>,
    pub direction: String,
    pub message_id: Option<String>,
    pub in_reply_to: Option<String>,
    pub references: Option<String>,
    pub from_addr: Option<String>,
    pub from_name: Option<String>,
    pub to_addrs: String,
    pub cc_addrs: String,
    pub date: Option<DateTimeUtc>,
    pub received_at: DateTimeUtc,
    pub subject: String,
    pub body_text: String,
    pub body_html: Option<String>,
    pub size: i64,
    pub content_hash: String,
    pub has_attachments: bool,
    pub verdict_class: Option<String>,
    #[sea_orm(column_type = "Double", nullable)]
    pub verdict_score: Option<f64>,
    pub verdict_tags: Option<String>,
    pub quarantined: bool,
    pub defects: String,
    pub source: Option<String>,
    pub source_position: Option<String>,
    pub blob_id: Option<i64>,
    /// `qd_core::lookup_key(content_hash)`, what the dedupe index holds.
    pub content_key: i64,
    /// `qd_core::lookup_key(message_id)`, what the threading index holds.
    pub message_id_key: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
