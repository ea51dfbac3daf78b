//! Retention: how long each kind of data is kept, as a pure function of (facts, now).
//!
//! The policy of our privacy statement, in one place:
//! - customer correspondence is kept while the customer is active and deleted
//!   [`RetentionPolicy::customer_after_former`] (7 years) after they became former;
//! - requests from people who never became customers are deleted
//!   [`RetentionPolicy::non_customer_after_activity`] (12 months) after the ticket's last
//!   activity;
//! - quarantined spam after 30 days, virus mail after 7 days (from receipt);
//! - a ticket marked as tax/VAT evidence is kept at least 10 years after its last activity
//!   (a legal obligation outlives the customer rule, so the later date wins);
//! - a legal hold on the customer or the ticket suspends deletion altogether.
//!
//! Nothing here reads a database or a clock: the worker gathers [`TicketFacts`] and
//! [`QuarantineFacts`], passes `now`, and acts on the [`Decision`]. That is what lets the
//! rules be property-tested and lets a dry run say exactly what a real run would do.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Days, Months, Utc};
use serde::{Deserialize, Serialize};

use crate::CustomerStatus;

/// A calendar span such as `7y`, `12mo`, `30d` or `1y6mo`.
///
/// Calendar arithmetic (months and years) rather than a fixed number of seconds: "seven
/// years after" means the same date seven years on, whatever the leap years.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    pub months: u32,
    pub days: u32,
}

impl Span {
    pub const fn years(n: u32) -> Span {
        Span {
            months: n * 12,
            days: 0,
        }
    }
    pub const fn months(n: u32) -> Span {
        Span { months: n, days: 0 }
    }
    pub const fn days(n: u32) -> Span {
        Span { months: 0, days: n }
    }

    /// `t + self`, saturating at the largest representable date.
    pub fn after(self, t: DateTime<Utc>) -> DateTime<Utc> {
        t.checked_add_months(Months::new(self.months))
            .and_then(|t| t.checked_add_days(Days::new(u64::from(self.days))))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

/// A span that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a retention span (write e.g. 7y, 12mo, 30d or 1y6mo)")]
pub struct SpanError(pub String);

impl FromStr for Span {
    type Err = SpanError;

    fn from_str(s: &str) -> Result<Span, SpanError> {
        let err = || SpanError(s.to_string());
        let text = s.trim().to_ascii_lowercase();
        if text.is_empty() {
            return Err(err());
        }
        let mut span = Span::default();
        let mut rest = text.as_str();
        while !rest.is_empty() {
            let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
            if digits == 0 {
                return Err(err());
            }
            let n: u32 = rest[..digits].parse().map_err(|_| err())?;
            rest = &rest[digits..];
            let unit_len = rest.chars().take_while(|c| c.is_ascii_alphabetic()).count();
            let unit = &rest[..unit_len];
            rest = rest[unit_len..].trim_start();
            match unit {
                "y" | "year" | "years" => {
                    span.months = span
                        .months
                        .checked_add(n.checked_mul(12).ok_or_else(err)?)
                        .ok_or_else(err)?
                }
                "mo" | "month" | "months" => {
                    span.months = span.months.checked_add(n).ok_or_else(err)?
                }
                "w" | "week" | "weeks" => {
                    span.days = span
                        .days
                        .checked_add(n.checked_mul(7).ok_or_else(err)?)
                        .ok_or_else(err)?
                }
                "d" | "day" | "days" => span.days = span.days.checked_add(n).ok_or_else(err)?,
                _ => return Err(err()),
            }
        }
        Ok(span)
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, mo) = (self.months / 12, self.months % 12);
        let mut wrote = false;
        if y > 0 {
            write!(f, "{y}y")?;
            wrote = true;
        }
        if mo > 0 {
            write!(f, "{mo}mo")?;
            wrote = true;
        }
        if self.days > 0 || !wrote {
            write!(f, "{}d", self.days)?;
        }
        Ok(())
    }
}

impl Serialize for Span {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Span, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How long each retention class keeps its data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionPolicy {
    /// Customer correspondence, counted from the day the customer became former.
    pub customer_after_former: Span,
    /// Requests from non-customers (and prospects), counted from the ticket's last activity.
    pub non_customer_after_activity: Span,
    /// Quarantined spam, counted from receipt.
    pub quarantined_spam: Span,
    /// Mail with a virus verdict, counted from receipt.
    pub virus: Span,
    /// Staff-access audit events, counted from the access.
    pub staff_access_audit: Span,
    /// Tickets in the tax/VAT evidence class, counted from the ticket's last activity.
    pub tax_evidence: Span,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        RetentionPolicy {
            customer_after_former: Span::years(7),
            non_customer_after_activity: Span::months(12),
            quarantined_spam: Span::days(30),
            virus: Span::days(7),
            staff_access_audit: Span::years(2),
            tax_evidence: Span::years(10),
        }
    }
}

/// Why data is kept or deleted: the class of the rule that decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum RetentionClass {
    CustomerCorrespondence,
    NonCustomer,
    QuarantinedSpam,
    Virus,
    TaxEvidence,
    StaffAccessAudit,
}

impl RetentionClass {
    pub fn as_str(self) -> &'static str {
        match self {
            RetentionClass::CustomerCorrespondence => "customer_correspondence",
            RetentionClass::NonCustomer => "non_customer",
            RetentionClass::QuarantinedSpam => "quarantined_spam",
            RetentionClass::Virus => "virus",
            RetentionClass::TaxEvidence => "tax_evidence",
            RetentionClass::StaffAccessAudit => "staff_access_audit",
        }
    }
}

impl fmt::Display for RetentionClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the worker knows about the customer behind a ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerFacts {
    pub status: CustomerStatus,
    /// When the customer became former (required for a meaningful former status; a
    /// former customer without the date is kept — we never guess a deletion date).
    pub former_since: Option<DateTime<Utc>>,
    pub legal_hold: bool,
}

/// The facts about one ticket that retention depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketFacts {
    /// `None`: the requester is not linked to any customer.
    pub customer: Option<CustomerFacts>,
    pub last_activity_at: DateTime<Utc>,
    pub legal_hold: bool,
    pub tax_evidence: bool,
    /// Another customer's contact wrote in the ticket (a colleague in the thread), and
    /// that customer is active: the mail is their correspondence too.
    pub participant_active: bool,
    /// The latest date a customer whose contact wrote in the ticket stopped being one
    /// (former, or a prospect again): their term runs from it.
    pub participant_former_since: Option<DateTime<Utc>>,
}

/// The facts about one quarantined message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantineFacts {
    pub virus: bool,
    pub received_at: DateTime<Utc>,
    /// Hold on the message's ticket or its customer.
    pub legal_hold: bool,
}

/// The outcome of evaluating one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// A legal hold suspends deletion; nothing is due.
    Hold,
    /// Kept; `due` is when it will be deleted (`None`: not while things stay as they are,
    /// e.g. an active customer).
    Keep {
        class: RetentionClass,
        due: Option<DateTime<Utc>>,
    },
    /// Due now (since `due`).
    Delete {
        class: RetentionClass,
        due: DateTime<Utc>,
    },
}

impl Decision {
    pub fn is_delete(&self) -> bool {
        matches!(self, Decision::Delete { .. })
    }

    /// When the item becomes due, if it ever does under the current facts.
    pub fn due(&self) -> Option<DateTime<Utc>> {
        match self {
            Decision::Hold => None,
            Decision::Keep { due, .. } => *due,
            Decision::Delete { due, .. } => Some(*due),
        }
    }

    fn from_due(class: RetentionClass, due: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Self {
        match due {
            Some(due) if due <= now => Decision::Delete { class, due },
            due => Decision::Keep { class, due },
        }
    }
}

/// Decides a ticket (its messages, attachments and raw mail go with it).
pub fn evaluate_ticket(
    facts: &TicketFacts,
    policy: &RetentionPolicy,
    now: DateTime<Utc>,
) -> Decision {
    let customer_hold = facts.customer.as_ref().is_some_and(|c| c.legal_hold);
    if facts.legal_hold || customer_hold {
        return Decision::Hold;
    }
    // A late message from a former customer is still a request we answered: it is kept at
    // least as long as any non-customer request would be.
    let as_request = policy
        .non_customer_after_activity
        .after(facts.last_activity_at);
    let (class, due) = match &facts.customer {
        Some(c) if c.status == CustomerStatus::Active => {
            (RetentionClass::CustomerCorrespondence, None)
        }
        Some(c) if c.status == CustomerStatus::Former => (
            RetentionClass::CustomerCorrespondence,
            c.former_since
                .map(|since| policy.customer_after_former.after(since).max(as_request)),
        ),
        // A prospect that was a customer before (billing moved a former customer to a
        // new trial) keeps the former customer's term from when it stopped.
        Some(CustomerFacts {
            former_since: Some(since),
            ..
        }) => (
            RetentionClass::CustomerCorrespondence,
            Some(policy.customer_after_former.after(*since).max(as_request)),
        ),
        // Prospects that never became customers.
        _ => (RetentionClass::NonCustomer, Some(as_request)),
    };
    // Mail another customer's contact wrote in the ticket is kept as that customer's
    // own would be: while they are one, and their term after they stop.
    let (class, due) = if facts.participant_active {
        (RetentionClass::CustomerCorrespondence, None)
    } else if let Some(since) = facts.participant_former_since {
        let theirs = policy.customer_after_former.after(since).max(as_request);
        (
            RetentionClass::CustomerCorrespondence,
            due.map(|d| d.max(theirs)),
        )
    } else {
        (class, due)
    };
    if facts.tax_evidence {
        let tax_due = policy.tax_evidence.after(facts.last_activity_at);
        // Kept for the later of the two; an active customer keeps everything anyway.
        let due = due.map(|d| d.max(tax_due));
        return Decision::from_due(RetentionClass::TaxEvidence, due, now);
    }
    Decision::from_due(class, due, now)
}

/// Decides one quarantined message (spam or virus), independently of its ticket.
pub fn evaluate_quarantined(
    facts: &QuarantineFacts,
    policy: &RetentionPolicy,
    now: DateTime<Utc>,
) -> Decision {
    if facts.legal_hold {
        return Decision::Hold;
    }
    let (class, span) = if facts.virus {
        (RetentionClass::Virus, policy.virus)
    } else {
        (RetentionClass::QuarantinedSpam, policy.quarantined_spam)
    };
    Decision::from_due(class, Some(span.after(facts.received_at)), now)
}

/// The oldest staff-access audit event that must still be kept at `now`.
pub fn audit_cutoff(policy: &RetentionPolicy, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let span = policy.staff_access_audit;
    now.checked_sub_months(Months::new(span.months))
        .and_then(|t| t.checked_sub_days(Days::new(u64::from(span.days))))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn day(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
    }

    fn customer(status: CustomerStatus, former_since: Option<DateTime<Utc>>) -> CustomerFacts {
        CustomerFacts {
            status,
            former_since,
            legal_hold: false,
        }
    }

    fn ticket(c: Option<CustomerFacts>, last: DateTime<Utc>) -> TicketFacts {
        TicketFacts {
            customer: c,
            last_activity_at: last,
            legal_hold: false,
            tax_evidence: false,
            participant_active: false,
            participant_former_since: None,
        }
    }

    /// A non-customer's request in which an active customer's contact wrote is kept while
    /// that customer is one, and for a former customer's term after they stop; before,
    /// the ticket went after 12 months with that customer's mail in it.
    #[test]
    fn another_customers_contact_in_the_thread_keeps_it_as_theirs() {
        let p = RetentionPolicy::default();
        let mut t = ticket(None, day(2020, 1, 1));
        assert!(evaluate_ticket(&t, &p, day(2021, 6, 1)).is_delete());
        t.participant_active = true;
        assert_eq!(
            evaluate_ticket(&t, &p, day(2030, 1, 1)),
            Decision::Keep {
                class: RetentionClass::CustomerCorrespondence,
                due: None
            }
        );
        t.participant_active = false;
        t.participant_former_since = Some(day(2022, 1, 1));
        assert_eq!(
            evaluate_ticket(&t, &p, day(2021, 6, 1)),
            Decision::Keep {
                class: RetentionClass::CustomerCorrespondence,
                due: Some(day(2029, 1, 1))
            }
        );
    }

    #[test]
    fn spans_parse_and_print() {
        assert_eq!("7y".parse::<Span>().unwrap(), Span::years(7));
        assert_eq!("12mo".parse::<Span>().unwrap(), Span::months(12));
        assert_eq!(
            "1y6mo".parse::<Span>().unwrap(),
            Span {
                months: 18,
                days: 0
            }
        );
        assert_eq!("2w 3d".parse::<Span>().unwrap(), Span::days(17));
        for bad in ["", "7", "y", "7x", "-1d", "99999999999y"] {
            assert!(bad.parse::<Span>().is_err(), "{bad} should not parse");
        }
        assert_eq!(Span::years(7).to_string(), "7y");
        assert_eq!(Span::days(0).to_string(), "0d");
    }

    #[test]
    fn former_customer_mail_goes_seven_years_after_leaving() {
        let p = RetentionPolicy::default();
        let t = ticket(
            Some(customer(CustomerStatus::Former, Some(day(2018, 3, 1)))),
            day(2017, 6, 1),
        );
        assert!(!evaluate_ticket(&t, &p, day(2025, 2, 28)).is_delete());
        assert_eq!(
            evaluate_ticket(&t, &p, day(2025, 3, 1)),
            Decision::Delete {
                class: RetentionClass::CustomerCorrespondence,
                due: day(2025, 3, 1)
            }
        );
    }

    #[test]
    fn active_customers_keep_everything() {
        let p = RetentionPolicy::default();
        let t = ticket(
            Some(customer(CustomerStatus::Active, None)),
            day(1990, 1, 1),
        );
        assert_eq!(
            evaluate_ticket(&t, &p, day(2100, 1, 1)),
            Decision::Keep {
                class: RetentionClass::CustomerCorrespondence,
                due: None
            }
        );
    }

    #[test]
    fn non_customers_and_prospects_go_after_a_year_of_silence() {
        let p = RetentionPolicy::default();
        for c in [None, Some(customer(CustomerStatus::Prospect, None))] {
            let t = ticket(c, day(2024, 5, 10));
            assert!(!evaluate_ticket(&t, &p, day(2025, 5, 9)).is_delete());
            assert!(evaluate_ticket(&t, &p, day(2025, 5, 10)).is_delete());
        }
    }

    #[test]
    fn a_former_customer_on_a_new_trial_keeps_the_former_customers_term() {
        let p = RetentionPolicy::default();
        let t = ticket(
            Some(customer(CustomerStatus::Prospect, Some(day(2024, 1, 31)))),
            day(2023, 6, 1),
        );
        assert!(!evaluate_ticket(&t, &p, day(2030, 1, 1)).is_delete());
        assert!(evaluate_ticket(&t, &p, day(2031, 1, 31)).is_delete());
    }

    #[test]
    fn tax_evidence_outlives_the_customer_rule() {
        let p = RetentionPolicy::default();
        let mut t = ticket(
            Some(customer(CustomerStatus::Former, Some(day(2015, 1, 1)))),
            day(2014, 12, 1),
        );
        t.tax_evidence = true;
        assert!(!evaluate_ticket(&t, &p, day(2023, 1, 1)).is_delete());
        assert_eq!(
            evaluate_ticket(&t, &p, day(2024, 12, 1)),
            Decision::Delete {
                class: RetentionClass::TaxEvidence,
                due: day(2024, 12, 1)
            }
        );
    }

    #[test]
    fn quarantine_classes() {
        let p = RetentionPolicy::default();
        let q = QuarantineFacts {
            virus: true,
            received_at: day(2025, 1, 1),
            legal_hold: false,
        };
        assert!(!evaluate_quarantined(&q, &p, day(2025, 1, 7)).is_delete());
        assert!(evaluate_quarantined(&q, &p, day(2025, 1, 8)).is_delete());
        let spam = QuarantineFacts { virus: false, ..q };
        assert!(!evaluate_quarantined(&spam, &p, day(2025, 1, 30)).is_delete());
        assert!(evaluate_quarantined(&spam, &p, day(2025, 1, 31)).is_delete());
    }

    fn any_status() -> impl Strategy<Value = CustomerStatus> {
        prop_oneof![
            Just(CustomerStatus::Prospect),
            Just(CustomerStatus::Active),
            Just(CustomerStatus::Former)
        ]
    }

    fn any_time() -> impl Strategy<Value = DateTime<Utc>> {
        // 1990 .. 2090
        (631_152_000i64..3_786_912_000i64).prop_map(|s| Utc.timestamp_opt(s, 0).unwrap())
    }

    fn any_facts() -> impl Strategy<Value = TicketFacts> {
        (
            proptest::option::of((
                any_status(),
                proptest::option::of(any_time()),
                any::<bool>(),
            )),
            any_time(),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(c, last, hold, tax)| TicketFacts {
                participant_active: false,
                participant_former_since: None,
                customer: c.map(|(status, former_since, legal_hold)| CustomerFacts {
                    status,
                    former_since,
                    legal_hold,
                }),
                last_activity_at: last,
                legal_hold: hold,
                tax_evidence: tax,
            })
    }

    proptest! {
        #[test]
        fn a_hold_always_wins(mut f in any_facts(), now in any_time()) {
            f.legal_hold = true;
            prop_assert_eq!(evaluate_ticket(&f, &RetentionPolicy::default(), now), Decision::Hold);
        }

        #[test]
        fn active_customers_are_never_due(mut f in any_facts(), now in any_time()) {
            if let Some(c) = f.customer.as_mut() { c.status = CustomerStatus::Active; c.legal_hold = false; }
            else { f.customer = Some(customer(CustomerStatus::Active, None)); }
            f.legal_hold = false;
            let d = evaluate_ticket(&f, &RetentionPolicy::default(), now);
            prop_assert!(!d.is_delete());
            prop_assert_eq!(d.due(), None);
        }

        #[test]
        fn deleting_is_monotonic_in_time(f in any_facts(), a in any_time(), b in any_time()) {
            // Once due, an item stays due later; the due date does not depend on `now`.
            let p = RetentionPolicy::default();
            let (early, late) = if a <= b { (a, b) } else { (b, a) };
            let de = evaluate_ticket(&f, &p, early);
            let dl = evaluate_ticket(&f, &p, late);
            prop_assert_eq!(de.due(), dl.due());
            if de.is_delete() { prop_assert!(dl.is_delete()); }
        }

        #[test]
        fn nothing_goes_before_its_minimum(f in any_facts(), now in any_time()) {
            let p = RetentionPolicy::default();
            if let Decision::Delete { class, due } = evaluate_ticket(&f, &p, now) {
                prop_assert!(due <= now);
                // Never before a year of silence, whatever the class.
                prop_assert!(due >= p.non_customer_after_activity.after(f.last_activity_at));
                match class {
                    RetentionClass::CustomerCorrespondence => {
                        let c = f.customer.as_ref().unwrap();
                        prop_assert_ne!(c.status, CustomerStatus::Active);
                        prop_assert!(due >= p.customer_after_former.after(c.former_since.unwrap()));
                    }
                    RetentionClass::TaxEvidence => {
                        prop_assert!(f.tax_evidence);
                        prop_assert!(due >= p.tax_evidence.after(f.last_activity_at));
                    }
                    RetentionClass::NonCustomer => {
                        prop_assert!(f.customer.as_ref().is_none_or(|c| c.status == CustomerStatus::Prospect && c.former_since.is_none()));
                    }
                    other => prop_assert!(false, "unexpected class {other}"),
                }
            }
        }

        #[test]
        fn spans_round_trip(months in 0u32..2000, days in 0u32..2000) {
            let s = Span { months, days };
            prop_assert_eq!(s.to_string().parse::<Span>().unwrap(), s);
        }
    }
}
