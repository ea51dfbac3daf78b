use sea_orm::entity::prelude::*;

/// One outgoing message and its delivery state; see `crate::outbox`. `rcpt_to` is a
/// JSON array of envelope recipients; `raw` is cleared once the message is sent.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub kind: String,
    pub ticket_id: Option<i64>,
    #[sea_orm(unique)]
    pub message_id: String,
    pub in_reply_to: Option<String>,
    pub references: Option<String>,
    pub mail_from: String,
    pub rcpt_to: String,
    pub subject: String,
    pub language: Option<String>,
    pub raw: Option<Vec<u8>>,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: DateTimeUtc,
    pub claimed_until: Option<DateTimeUtc>,
    pub last_error: Option<String>,
    pub created_at: DateTimeUtc,
    pub sent_at: Option<DateTimeUtc>,
    pub failed_at: Option<DateTimeUtc>,
    pub sent_message_db_id: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
