//! Pure domain types and rules of quietdesk: no I/O, no async.
//!
//! The main types are the lifecycle enums ([`CustomerStatus`], [`TicketStatus`],
//! [`Direction`]), the ticket reference format that threads replies into tickets
//! ([`TicketRefFormat`]), the injected [`Clock`], address normalisation
//! ([`normalize_address`]) and [`Redacted`], which keeps personal data out of logs.
//! Every other crate of the workspace may depend on this one; it depends on none of them.

mod clock;
mod erase_address;
mod header_block;
mod ip;
mod lookup_key;
mod redacted;
pub mod retention;
mod status;
mod ticket_ref;

pub use clock::{Clock, FixedClock, SystemClock};
pub use erase_address::{
    erase_address_everywhere, erase_address_in_headers, erase_address_in_text, mailbox_is,
    mentioned_addresses, names_address, ERASED_MAILBOX,
};
pub use header_block::{
    blank_line_len, header_block_end, header_fields, without_fields, HeaderBlock,
};
pub use ip::anonymise_ip;
pub use lookup_key::lookup_key;
pub use redacted::Redacted;
pub use retention::{Decision, RetentionClass, RetentionPolicy, Span};
pub use status::{CustomerStatus, Direction, Label, ParseEnumError, TicketStatus};
pub use ticket_ref::{TicketRefError, TicketRefFormat};

/// Normalises an email address for lookups: trims whitespace and angle brackets and
/// lower-cases it. Local parts are case-sensitive in theory (RFC 5321 §2.4), but no
/// mail system our customers use treats them so, and matching must not split one
/// person into two contacts.
pub fn normalize_address(addr: &str) -> String {
    addr.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        .to_lowercase()
}

/// Normalises a Message-ID for threading lookups: strips whitespace and angle brackets.
/// Message-IDs compare case-sensitively (RFC 5322 §3.6.4), so the case is kept.
pub fn normalize_message_id(id: &str) -> Option<String> {
    let id = id
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim();
    if id.is_empty() {
        None
    } else {
        Some(id.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_compare_case_insensitively() {
        assert_eq!(
            normalize_address(" <Alice@Example.COM> "),
            "alice@example.com"
        );
    }

    #[test]
    fn message_ids_lose_brackets_but_keep_case() {
        assert_eq!(normalize_message_id(" <AbC@x> ").as_deref(), Some("AbC@x"));
        assert_eq!(normalize_message_id("<>"), None);
    }
}
