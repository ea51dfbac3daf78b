//! Tags, default weights and the [`Verdict`].
//!
//! A check emits a tag name and a detail; the weight comes from configuration
//! (`[filter.weights]`), falling back to [`DEFAULT_WEIGHTS`]. The verdict lists every
//! tag that fired with the score it contributed, so staff see why without reading mail.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// One reason behind a verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tag {
    pub name: String,
    /// What this tag added to the score (its weight, or a learned amount).
    pub score: f32,
    /// A short explanation without message content.
    pub detail: String,
}

impl Tag {
    pub fn new(name: impl Into<String>, score: f32, detail: impl Into<String>) -> Tag {
        Tag {
            name: name.into(),
            score,
            detail: detail.into(),
        }
    }
}

/// The class of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Ham,
    Spam,
    Virus,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Ham => "ham",
            Class::Spam => "spam",
            Class::Virus => "virus",
        }
    }
}

/// The filter's decision about one message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub class: Class,
    /// The sum of the tags' scores.
    pub score: f32,
    pub tags: Vec<Tag>,
    /// Ham, but at or above the ham threshold: worth a look.
    #[serde(default)]
    pub uncertain: bool,
    /// At or above the reject threshold (or a virus): may be refused at SMTP time.
    #[serde(default)]
    pub reject: bool,
    /// SHA-256 digests of the parts a virus signature matched (to quarantine them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub infected: Vec<String>,
}

impl Verdict {
    /// The static rules that fired: every tag but the learned model's own.
    pub fn rule_names(&self) -> impl Iterator<Item = &str> {
        self.tags
            .iter()
            .map(|t| t.name.as_str())
            .filter(|n| !crate::learn::is_learned_tag(n))
    }

    /// The static rules' share of the score: every tag's but the learned model's.
    pub fn rule_score(&self) -> f32 {
        self.tags
            .iter()
            .filter(|t| !crate::learn::is_learned_tag(&t.name))
            .map(|t| t.score)
            .sum()
    }
}

/// Default weights: (tag, weight, why). Positive is spam evidence, negative ham evidence.
/// The spam threshold is 5.0, so no single structural trait decides alone unless it is
/// near-proof (a signature match, an enforced DMARC failure, an upstream verdict).
pub const DEFAULT_WEIGHTS: &[(&str, f32, &str)] = &[
    // auth
    (
        "AUTH_SPF_PASS",
        -0.5,
        "the envelope sender's domain authorised the client",
    ),
    (
        "AUTH_SPF_FAIL",
        3.0,
        "the envelope sender's domain forbids the client",
    ),
    (
        "AUTH_SPF_SOFTFAIL",
        1.0,
        "the domain says the client is probably not theirs",
    ),
    (
        "AUTH_SPF_PERMERROR",
        0.5,
        "the domain's SPF record is broken",
    ),
    (
        "AUTH_DKIM_PASS",
        -1.0,
        "a domain took responsibility by signing",
    ),
    (
        "AUTH_DKIM_FAIL",
        1.5,
        "a signature does not verify: altered or forged",
    ),
    (
        "AUTH_DMARC_PASS",
        -1.5,
        "the From domain is authenticated and aligned",
    ),
    (
        "AUTH_DMARC_FAIL",
        3.0,
        "the From domain is not authenticated",
    ),
    (
        "AUTH_DMARC_FAIL_ENFORCED",
        6.0,
        "the From domain is forged and asks for rejection",
    ),
    (
        "AUTH_ARC_PASS",
        -0.5,
        "a forwarder's authentication record verifies",
    ),
    ("AUTH_ARC_FAIL", 1.0, "a broken ARC chain"),
    // received
    (
        "RCVD_NONE",
        1.0,
        "no trace at all: injected locally or stripped",
    ),
    ("RCVD_MANY_HOPS", 1.0, "a loop or a padded trace"),
    (
        "RCVD_MALFORMED",
        0.2,
        "a trace field without a receiving host",
    ),
    (
        "RCVD_DATE_12H",
        1.5,
        "a Received time stamp on a 12-hour clock",
    ),
    (
        "RCVD_HELO_BARE_IP",
        2.0,
        "the origin greeted with an address (ratware)",
    ),
    (
        "RCVD_RELAY_HELO_BARE_IP",
        1.5,
        "a relay greeted with an address",
    ),
    (
        "RCVD_HELO_NO_FQDN",
        0.3,
        "the origin greeted with a bare host name",
    ),
    ("RCVD_NO_RDNS", 0.5, "the origin address has no reverse DNS"),
    (
        "RCVD_DYNAMIC_RDNS",
        1.5,
        "the origin is a residential or dynamic address",
    ),
    (
        "RCVD_HELO_MISMATCH",
        0.2,
        "HELO and reverse DNS name different domains",
    ),
    (
        "RCVD_FORGED_HELO_FREEMAIL",
        3.0,
        "claims to be a free-mail server but is not",
    ),
    (
        "RCVD_PRIVATE_AFTER_PUBLIC",
        0.3,
        "a private address inside the public chain",
    ),
    (
        "RCVD_TIME_BACKWARDS",
        1.0,
        "trace time stamps go backwards: forged hops",
    ),
    (
        "RCVD_SLOW_CHAIN",
        0.5,
        "days spent in transit: queued or forged",
    ),
    ("RCVD_CLAIMED_TO_BE", 0.3, "a relay recorded a false HELO"),
    // headers
    ("MID_MISSING", 1.0, "no Message-ID (RFC 5322 wants one)"),
    ("MID_NO_BRACKETS", 1.0, "Message-ID not in angle brackets"),
    ("MID_NO_AT", 1.5, "Message-ID without @"),
    ("MID_EMPTY_PART", 1.5, "Message-ID with an empty side"),
    (
        "MID_HOST_NUMERIC",
        2.5,
        "Message-ID host is a fragment of an address (ratware)",
    ),
    ("MID_HOST_NO_DOT", 0.3, "Message-ID host is not a domain"),
    (
        "MID_ADDED_AT_BORDER",
        2.5,
        "arrived without a Message-ID: the receiving server made one",
    ),
    (
        "MID_ADDED_BY_RELAY",
        2.0,
        "a relay on the way made the Message-ID: the sender gave none",
    ),
    (
        "MID_ADDED_BY_FIRST_HOP",
        1.0,
        "the sender's first server made the Message-ID: the program gave none",
    ),
    (
        "MID_FREEMAIL_NO_PROVIDER_HOP",
        2.0,
        "Message-ID names a large provider whose servers never carried the message",
    ),
    (
        "FROM_FREEMAIL_NO_PROVIDER_HOP",
        2.0,
        "From a large provider's address, but its servers never carried the message",
    ),
    ("MID_SPACE", 1.0, "white space inside a Message-ID"),
    ("DATE_MISSING", 1.5, "no Date"),
    ("DATE_MALFORMED", 1.5, "Date is not an RFC 5322 date-time"),
    ("DATE_INVALID", 2.0, "Date does not parse"),
    ("DATE_FUTURE", 2.0, "Date more than a day after arrival"),
    ("DATE_AHEAD", 2.0, "Date hours after arrival"),
    ("DATE_PAST", 0.5, "Date days before arrival"),
    ("DATE_ABSURD_PAST", 2.0, "Date years before arrival"),
    ("DATE_BEFORE_1990", 2.0, "Date before 1990"),
    ("DATE_TZ_ABSURD", 2.0, "Date zone no place on Earth uses"),
    ("FROM_MISSING", 2.0, "no From"),
    ("FROM_NO_ADDRESS", 2.0, "From holds no address"),
    ("FROM_MULTIPLE", 1.0, "more than one From"),
    (
        "FROM_MULTIPLE_DOMAINS",
        3.0,
        "From names several domains (DMARC cannot apply)",
    ),
    ("FROM_NO_DOMAIN", 1.5, "From address without a domain"),
    ("FROM_DOMAIN_NO_DOT", 1.0, "From domain is not qualified"),
    ("FROM_LOCAL_DIGITS", 1.5, "From local part mostly digits"),
    (
        "FROM_NAME_OTHER_ADDRESS",
        2.0,
        "display name shows another address",
    ),
    (
        "FROM_NAME_SPOOFS_OURS",
        4.0,
        "display name claims our domain",
    ),
    ("FROM_ANGLE_NO_NAME", 0.5, "From is a bare <address>"),
    ("FROM_NO_NAME", 1.0, "From without a display name"),
    (
        "HDR_REPLY",
        -1.0,
        "part of a conversation: spam rarely replies",
    ),
    ("HDR_PRIORITY_HIGH", 1.5, "marked highest priority"),
    (
        "FROM_FREEMAIL_RETURN_PATH_ELSEWHERE",
        0.5,
        "free-mail From, another envelope sender",
    ),
    (
        "DOMAIN_PUNYCODE",
        1.0,
        "an internationalised (punycode) sender domain",
    ),
    ("DOMAIN_NON_ASCII", 1.0, "a raw non-ASCII sender domain"),
    (
        "DOMAIN_LOOKALIKE_OURS",
        4.0,
        "a sender domain that resembles ours",
    ),
    (
        "REPLYTO_DOMAIN_DIFFERS",
        0.0,
        "replies go to another domain",
    ),
    // Web contact forms (From the site, Reply-To the customer's free-mail address) and
    // lists that rewrite From for DMARC do this too: a helpdesk's everyday mail.
    (
        "REPLYTO_FREEMAIL_DIFFERS",
        0.5,
        "replies go to another free-mail mailbox",
    ),
    ("TO_MISSING", 1.0, "no To or Cc"),
    // Announcements sent to oneself with the list in Bcc are ordinary mail.
    ("TO_UNDISCLOSED", 1.0, "recipients withheld"),
    ("TO_NO_ADDRESS", 1.0, "To without a usable address"),
    ("TO_MANY", 1.5, "many recipients"),
    ("CC_EMPTY", 1.0, "an empty Cc field"),
    ("TO_HARVESTED_LIST", 1.5, "several recipients at one domain"),
    ("MAILER_BULK", 3.0, "a known mass-mailing program"),
    (
        "MAILER_OE_MALFORMED",
        2.5,
        "an Outlook Express version it never writes",
    ),
    (
        "MAILER_FORGED_OE",
        1.5,
        "claims Outlook Express but lacks its marks",
    ),
    (
        "MID_OUTLOOK_FORGED",
        3.0,
        "Outlook-shaped Message-ID from no Microsoft mailer",
    ),
    (
        "MID_OUTLOOK_TIME",
        3.0,
        "the time inside an Outlook-shaped Message-ID matches no date of the message",
    ),
    (
        "PRIORITY_NO_MAILER",
        2.0,
        "a priority field but no X-Mailer or User-Agent",
    ),
    ("FROM_EQUALS_TO", 1.0, "From is the recipient's own address"),
    (
        "MAILER_FORGED_OUTLOOK",
        1.0,
        "claims Outlook but lacks its marks",
    ),
    ("MAILER_JUNK", 1.0, "X-Mailer is empty or a number"),
    ("SUBJ_MISSING", 0.5, "no Subject"),
    ("SUBJ_EMPTY", 0.3, "empty Subject"),
    ("SUBJ_8BIT", 1.0, "raw 8-bit Subject"),
    ("SUBJ_MIXED_CHARSETS", 1.0, "Subject mixes charsets"),
    (
        "SUBJ_MANY_ENCODED_WORDS",
        1.0,
        "Subject in many encoded-words",
    ),
    (
        "SUBJ_NEEDLESSLY_ENCODED",
        1.0,
        "ASCII Subject hidden in an encoded-word",
    ),
    ("HDR_8BIT", 0.5, "raw 8-bit header bytes"),
    ("HDR_NONE", 3.0, "not a mail message"),
    // upstream
    ("UPSTREAM_SPAM", 6.0, "our relay's filter said spam"),
    ("UPSTREAM_HAM", -1.0, "our relay's filter said ham"),
    // List headers cost a sender nothing, and bulk senders must send List-Unsubscribe
    // (Gmail's and Yahoo's rules since 2024): shown, but only List-Id leans to ham.
    ("LIST_ID", -0.5, "a mailing list (RFC 2919)"),
    ("LIST_UNSUBSCRIBE", 0.0, "offers unsubscription (RFC 2369)"),
    ("PRECEDENCE_LIST", 0.0, "Precedence list/bulk"),
    // mime
    ("MIME_HTML_ONLY", 2.5, "HTML without a text alternative"),
    (
        "MIME_ALTERNATIVE_SINGLE",
        0.5,
        "an alternative with one part",
    ),
    ("MIME_IMAGE_ONLY", 2.0, "images and no text"),
    ("MIME_NO_VERSION", 1.5, "MIME without MIME-Version"),
    ("MIME_MALFORMED", 1.0, "a part does not decode as declared"),
    ("MIME_DEEP_NESTING", 1.5, "deep MIME nesting"),
    // Exchange, Gmail and many libraries base64 UTF-8 text as a matter of course.
    ("MIME_BASE64_TEXT", 0.5, "body text in base64"),
    ("MIME_HTML_NO_CHARSET", 1.0, "HTML without a charset"),
    ("MIME_BAD_CHARSET", 1.0, "a charset that is not a name"),
    (
        "CHARSET_FARAWAY",
        2.0,
        "text in a charset of a script this desk does not expect",
    ),
    ("MIME_SIZE_MISMATCH", 1.0, "declared size differs"),
    ("MIME_EXECUTABLE", 3.0, "an executable attachment"),
    (
        "MIME_DOUBLE_EXTENSION",
        4.0,
        "an executable dressed as a document",
    ),
    ("MIME_OFFICE_MACRO", 2.0, "a macro-enabled Office file"),
    (
        "MIME_TYPE_NAME_MISMATCH",
        2.0,
        "declared type and file name disagree",
    ),
    (
        "ARCHIVE_EXECUTABLE",
        3.0,
        "an archive holding an executable",
    ),
    (
        "ARCHIVE_OFFICE_MACRO",
        2.0,
        "an archive holding a macro-enabled file",
    ),
    (
        "ARCHIVE_LISTING_INCOMPLETE",
        1.0,
        "a zip whose listing could not be read in full",
    ),
    // signatures
    ("VIRUS_SIGNATURE", 20.0, "a virus signature matched"),
    ("VIRUS_CLAMD", 20.0, "clamd found a virus"),
    ("CLAMD_UNREACHABLE", 2.0, "attachments could not be scanned"),
    (
        "CLAMD_SIZE_LIMIT",
        2.0,
        "an attachment larger than clamd scans went unscanned",
    ),
    // learn
    (
        "LEARNED_SPAM",
        crate::learn::LEARNED_SPAM_DEFAULT,
        "the most the learned correction adds",
    ),
    (
        "LEARNED_HAM",
        crate::learn::LEARNED_HAM_DEFAULT,
        "the most the learned correction takes away",
    ),
];

/// Weights in force: defaults overlaid with configuration.
#[derive(Debug, Clone)]
pub(crate) struct Weights(HashMap<String, f32>);

impl Weights {
    pub(crate) fn new(overrides: &std::collections::BTreeMap<String, f32>) -> Weights {
        let mut map: HashMap<String, f32> = DEFAULT_WEIGHTS
            .iter()
            .map(|(n, w, _)| ((*n).to_owned(), *w))
            .collect();
        for (k, v) in overrides {
            map.insert(k.clone(), *v);
        }
        Weights(map)
    }

    pub(crate) fn get(&self, name: &str) -> f32 {
        self.0.get(name).copied().unwrap_or(0.0)
    }
}
