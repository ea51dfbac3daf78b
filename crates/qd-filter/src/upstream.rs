//! Verdicts written by upstream filters (SpamAssassin's X-Spam-Status / X-Spam-Flag,
//! rspamd's X-Spam / X-Rspamd-*), believed only when our own relays added them, and list
//! and bulk headers (RFC 2369, RFC 2919) as ham-leaning evidence.

use qd_mail::MessageView;

use crate::util::{host_in_domain, Hits};

/// How many leading header fields our relays wrote. The topmost Received must be by a
/// trusted relay; each one below counts only while the hop above it recorded receiving
/// the message *from* a trusted relay (by the reverse DNS name it looked up, which the
/// sender cannot choose as it chooses its HELO). Every field down to the last such
/// Received is ours; anything below existed before our relays saw the message. Without
/// that chain, a sender could forge `Received: … by <our relay>` under forged
/// Authentication-Results or X-Spam-Status fields and have them believed. `0` when
/// nothing is trusted.
pub(crate) fn trusted_prefix(view: &MessageView, trusted: &[String]) -> usize {
    if trusted.is_empty() {
        return 0;
    }
    let is_trusted =
        |host: Option<&str>| host.is_some_and(|h| trusted.iter().any(|t| host_in_domain(h, t)));
    let mut end = 0;
    let mut next_is_ours = true;
    for (i, h) in view.headers().iter().enumerate() {
        if !h.name.eq_ignore_ascii_case("Received") {
            continue;
        }
        let hop = h.received.as_ref();
        if !next_is_ours || !is_trusted(hop.and_then(|r| r.by.as_deref())) {
            break;
        }
        end = i + 1;
        next_is_ours = hop
            .and_then(|r| r.rdns.as_deref())
            .filter(|rdns| looked_up(&h.raw, rdns))
            .is_some_and(|rdns| is_trusted(Some(rdns)));
    }
    end
}

/// Whether `rdns`, the name the parser found in a Received field's comments, is the
/// relay's own reverse lookup of the client: the name right before the bracketed address
/// (`from helo (name [192.0.2.1])`), not marked unverified (sendmail's `(may be
/// forged)`: the PTR record, which the owner of the address writes) and not some other
/// name in a comment (Postfix's `(Client CN "…")` is the sender's certificate).
fn looked_up(raw: &str, rdns: &str) -> bool {
    let text = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    let lower = text.to_ascii_lowercase();
    let rdns = rdns.to_ascii_lowercase();
    let Some(at) = lower.find(&format!("({rdns} [")) else {
        return false;
    };
    // The rest of that comment, up to its closing parenthesis after the address.
    let rest = &lower[at..];
    let comment = rest.find("])").map_or(rest, |end| &rest[..end + 2]);
    let after = &rest[comment.len()..];
    !comment.contains("may be forged") && !after.trim_start().starts_with("(may be forged)")
}

pub(crate) fn check(view: &MessageView, trusted_end: usize, hits: &mut Hits) {
    for h in view.headers().iter().take(trusted_end) {
        let name = h.name.to_ascii_lowercase();
        let value = h.raw.trim().to_ascii_lowercase();
        match name.as_str() {
            "x-spam-flag" if value.starts_with("yes") => {
                hits.add("UPSTREAM_SPAM", "X-Spam-Flag: YES from our relay");
            }
            "x-spam-status" if value.starts_with("yes") => {
                hits.add("UPSTREAM_SPAM", "X-Spam-Status: Yes from our relay");
            }
            "x-spam-status" if value.starts_with("no") => {
                hits.add("UPSTREAM_HAM", "X-Spam-Status: No from our relay");
            }
            "x-spam" if value.starts_with("yes") => {
                hits.add("UPSTREAM_SPAM", "X-Spam: Yes from our relay");
            }
            "x-rspamd-action" if value != "no action" && value != "greylist" => {
                hits.add("UPSTREAM_SPAM", "rspamd action from our relay");
            }
            "x-rspamd-action" => {
                hits.add("UPSTREAM_HAM", "rspamd: no action, from our relay");
            }
            _ => {}
        }
    }
    if view.header("List-Id").is_some() {
        hits.add("LIST_ID", "mailing list (List-Id)");
    }
    if view.header("List-Unsubscribe").is_some() {
        hits.add("LIST_UNSUBSCRIBE", "offers List-Unsubscribe");
    }
    if let Some(p) = view.header("Precedence") {
        let p = p.raw.trim().to_ascii_lowercase();
        if p == "list" || p == "bulk" {
            hits.add("PRECEDENCE_LIST", "Precedence: list/bulk");
        }
    }
}
