//! A dozen synthetic messages and helpers to search them.

use chrono::{DateTime, TimeZone, Utc};
use qd_search::{Query, SearchDoc, SearchIndex};

pub const HEAP: usize = 50_000_000;

pub fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
}

#[allow(clippy::too_many_arguments)]
pub fn doc(
    id: i64,
    ticket: i64,
    subject: &str,
    body: &str,
    from: &str,
    to: &str,
    status: &str,
    date: DateTime<Utc>,
    tags: &[&str],
    has_attachment: bool,
) -> SearchDoc {
    SearchDoc {
        message_db_id: id,
        ticket_id: ticket * 10,
        ticket_number: ticket,
        subject: subject.into(),
        body: body.into(),
        from: from.into(),
        to: to.into(),
        status: status.into(),
        date,
        tags: tags.iter().map(|t| t.to_string()).collect(),
        has_attachment,
    }
}

const SUPPORT: &str = "support@quietdesk.test";

pub fn corpus() -> Vec<SearchDoc> {
    vec![
        doc(
            1,
            101,
            "Invoice for March",
            "Please find the invoice attached. Payment is due in thirty days.",
            "Alice Smith <alice@example.com>",
            SUPPORT,
            "open",
            at(2024, 3, 1, 9, 0, 0),
            &["billing"],
            true,
        ),
        doc(
            2,
            101,
            "Re: Invoice for March",
            "Thanks, the payment was sent yesterday.",
            SUPPORT,
            "alice@example.com",
            "open",
            at(2024, 3, 2, 10, 0, 0),
            &["billing"],
            false,
        ),
        doc(
            3,
            102,
            "Reminder",
            "This is a reminder about a late payment on your account.",
            "Bob Jones <bob@corp.example>",
            SUPPORT,
            "pending",
            at(2024, 2, 29, 23, 59, 59),
            &[],
            false,
        ),
        doc(
            4,
            103,
            "Question about my payment",
            "The payment was late because the bank was closed.",
            "carol@example.org",
            SUPPORT,
            "closed",
            at(2024, 1, 15, 12, 0, 0),
            &["bank"],
            true,
        ),
        doc(
            5,
            104,
            "Café menu",
            "Our Café opens at eight.",
            "Dörte Ölmann <doerte@cafe.example>",
            SUPPORT,
            "open",
            at(2024, 3, 1, 0, 0, 0),
            &["Needs Review"],
            false,
        ),
        doc(
            6,
            105,
            "Script test",
            "<script>alert('x')</script> payment & more",
            "mallory@evil.example",
            SUPPORT,
            "closed",
            at(2024, 2, 1, 0, 0, 0),
            &[],
            false,
        ),
        doc(
            7,
            1234,
            "Password reset",
            "I cannot log in since Monday.",
            "dave@example.com",
            "support@quietdesk.test cc-person@example.net",
            "pending",
            at(2024, 3, 10, 8, 0, 0),
            &[],
            false,
        ),
        doc(
            8,
            106,
            "Shipping delay",
            "Where is my parcel? The tracking number does not work.",
            "erin@shop.example",
            SUPPORT,
            "open",
            at(2024, 3, 5, 14, 0, 0),
            &["shipping"],
            false,
        ),
        doc(
            9,
            107,
            "Refund request",
            "I would like a refund for order 5521.",
            "frank@example.net",
            SUPPORT,
            "open",
            at(2024, 3, 6, 15, 0, 0),
            &["billing", "refund"],
            true,
        ),
        doc(
            10,
            107,
            "Re: Refund request",
            "Your refund has been processed.",
            SUPPORT,
            "frank@example.net",
            "open",
            at(2024, 3, 7, 16, 0, 0),
            &["billing", "refund"],
            false,
        ),
        doc(
            11,
            108,
            "Newsletter",
            "Monthly news: new features and a late spring sale.",
            "news@vendor.example",
            SUPPORT,
            "closed",
            at(2023, 12, 20, 7, 0, 0),
            &[],
            false,
        ),
        doc(
            12,
            109,
            "Contract renewal",
            "The contract renewal documents are attached for signature.",
            "grace@partner.example",
            SUPPORT,
            "pending",
            at(2024, 2, 20, 11, 0, 0),
            &["legal"],
            true,
        ),
    ]
}

pub fn indexed(docs: &[SearchDoc]) -> SearchIndex {
    let index = SearchIndex::create_in_ram().unwrap();
    let mut w = index.writer(HEAP, 1).unwrap();
    for d in docs {
        w.add(d).unwrap();
    }
    w.commit().unwrap();
    index
}

pub fn q(s: &str) -> Query {
    Query::parse(s).unwrap()
}

/// Ids of the hits in rank order.
pub fn ids(index: &SearchIndex, query: &str) -> Vec<i64> {
    index
        .search(&q(query), 100)
        .unwrap()
        .iter()
        .map(|h| h.message_db_id)
        .collect()
}

/// Ids of the hits, sorted, for queries whose order does not matter.
pub fn id_set(index: &SearchIndex, query: &str) -> Vec<i64> {
    let mut v = ids(index, query);
    v.sort_unstable();
    v
}
