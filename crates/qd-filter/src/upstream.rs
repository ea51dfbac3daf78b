//! Verdicts written by upstream filters (SpamAssassin's X-Spam-Status / X-Spam-Flag,
//! rspamd's X-Spam / X-Rspamd-*), believed only when our own relays added them, and list
//! and bulk headers (RFC 2369, RFC 2919) as ham-leaning evidence.

use qd_mail::MessageView;

use crate::util::{host_in_domain, Hits};

/// How many leading header fields our relays wrote: everything down to the last of the
/// unbroken run of Received fields at the top whose `by` host is a trusted relay.
/// Fields below it existed before our relay saw the message. `0` when nothing is
/// trusted.
pub(crate) fn trusted_prefix(view: &MessageView, trusted: &[String]) -> usize {
    if trusted.is_empty() {
        return 0;
    }
    let mut end = 0;
    for (i, h) in view.headers().iter().enumerate() {
        if !h.name.eq_ignore_ascii_case("Received") {
            continue;
        }
        let by = h.received.as_ref().and_then(|r| r.by.as_deref());
        if by.is_some_and(|b| trusted.iter().any(|t| host_in_domain(b, t))) {
            end = i + 1;
        } else {
            break;
        }
    }
    end
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
