use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "tickets")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub number: i64,
    pub subject: String,
    pub status: String,
    pub team: Option<String>,
    pub assignee: Option<String>,
    pub requester_id: Option<i64>,
    pub customer_id: Option<i64>,
    pub created_at: DateTimeUtc,
    pub last_activity_at: DateTimeUtc,
    /// Suspends retention deletion of this ticket.
    pub legal_hold: bool,
    /// A retention class chosen by staff (`tax_evidence`); `None`: derived from the customer.
    pub retention_class: Option<String>,
    /// Set by an erasure that keeps statistics; such a ticket takes no new mail.
    pub anonymised_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
