//! The message stream: threads opened and continued in time order, each message
//! assembled as raw RFC 5322 bytes.

use std::fmt::Write;
use std::sync::OnceLock;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::attach;
use crate::encode::{asctime, base64_body, encoded_words, html_escape, quoted_printable, rfc2822};
use crate::people::{customer_at, customer_key, pick, stranger, Locale, LOCALES};
use crate::vocab::Vocabulary;
use crate::{SynthConfig, SynthMessage};

/// The mailbox every message is addressed to.
pub const SUPPORT: &str = "support@quietdesk.example";

/// Threads in progress at once. Bounds the generator's memory whatever N is, and sets how
/// far apart in the inbox the messages of one thread land.
const MAX_OPEN: usize = 48;
/// Chance to open a thread when one may be opened; about 1 / mean thread length, so the
/// pool hovers below its cap instead of filling up.
const P_OPEN: f64 = 0.43;
/// Messages per thread, 1 to 6.
const LEN_WEIGHTS: [u32; 6] = [35, 25, 17, 11, 7, 5];
/// Lines of the previous message quoted in a reply.
const MAX_QUOTED: usize = 24;
const WRAP: usize = 72;

const SUBJECTS: &[&str] = &[
    "Server down",
    "Website down: {domain}",
    "Invoice question",
    "Question about invoice {invoice}",
    "DNS not resolving for {domain}",
    "SSL certificate expired on {domain}",
    "Cannot send email from {mailbox}",
    "Emails to {mailbox} bounce",
    "Website very slow",
    "502 Bad Gateway on {domain}",
    "Upgrade to {plan}",
    "Request: restore backup of {domain}",
    "Password reset not working",
    "Cannot log in to the control panel",
    "Move {domain} to another account",
    "Cancel my subscription",
    "Domain transfer {domain}",
    "Spam coming from our server?",
    "Disk quota exceeded on {server}",
    "PHP version upgrade for {domain}",
    "MySQL database connection error",
    "Cron job not running",
    "FTP access not working",
    "Please add a new mailbox",
    "Payment failed",
    "Refund request for {invoice}",
    "WordPress site hacked?",
    "Our mail goes to junk at Outlook",
    "Need help with DKIM setup for {domain}",
    "SSH key not accepted on {server}",
    "High CPU load on {server}",
    "Urgent: shop offline",
];

const STRANGER_SUBJECTS: &[&str] = &[
    "Partnership proposal",
    "Guest post on your blog?",
    "Quote request: hosting for 20 websites",
    "Your website ranking",
    "Question about your VPS plans",
    "Job application: system administrator",
    "Can I transfer my domain {domain} to you?",
    "Unpaid invoice {invoice}",
    "Collaboration opportunity",
];

const TEMPLATES: &[&str] = &[
    "The website {domain} has been down since {hh}:{mm} this morning.",
    "When I open https://{domain}/{path} I get a {code} error.",
    "Our office IP address is {ip}, could it be blocked by your firewall?",
    "The invoice {invoice} shows an amount of EUR {amount}, but we expected less.",
    "I already restarted {server} twice, but it did not help.",
    "The error message says: \"{error}\".",
    "Mail to {mailbox} bounces with {smtp}.",
    "Can you check the DNS records for {domain}? The MX should point to mx1.quietdesk.example.",
    "Our customer number is {custno}.",
    "You can reach me on {phone} if that is easier.",
    "We are on the {plan} plan and would like to upgrade.",
    "The disk usage on {server} is at {pct}% according to the panel.",
    "Could you restore the backup of {date} for {domain}?",
    "The SSL certificate for {domain} expired on {date}.",
    "PHP {php} is required by the new version of our shop.",
    "A traceroute from {ip} stops at the second hop.",
    "Is there any maintenance planned for {server} this week?",
    "Since {hh}:{mm} the checkout on {domain} times out after {pct} seconds.",
];

/// Paragraph openings that put "From " at the start of a body line, which mboxrd must
/// quote: without them the quoting path of every mbox reader goes untested.
const FROM_STARTS: &[&str] = &[
    "From what I can see",
    "From our side nothing changed, but",
    "From the logs it looks like",
    "From yesterday on",
];

const ERRORS: &[&str] = &[
    "ERR_CONNECTION_REFUSED",
    "502 Bad Gateway",
    "SQLSTATE[HY000] [2002] Connection refused",
    "DNS_PROBE_FINISHED_NXDOMAIN",
    "Error establishing a database connection",
    "NET::ERR_CERT_DATE_INVALID",
    "Permission denied (publickey)",
    "Allowed memory size of 134217728 bytes exhausted",
    "530 Login authentication failed",
];
const SMTP: &[&str] = &[
    "550 5.7.1 Message rejected as spam",
    "554 5.7.1 Relay access denied",
    "451 4.7.1 Greylisted, please try again later",
    "421 4.7.0 Too many connections",
];
const CODES: &[&str] = &["500", "502", "503", "504", "403", "404"];
const PLANS: &[&str] = &[
    "Webhosting Basic",
    "Webhosting Plus",
    "Business Hosting",
    "VPS Medium",
    "VPS Large",
    "Dedicated S",
];
const PATHS: &[&str] = &[
    "",
    "wp-admin",
    "checkout",
    "contact",
    "shop/cart",
    "api/v1/orders",
];
const PHP: &[&str] = &["8.1", "8.2", "8.3", "7.4"];
const MAILERS: &[(&str, &str)] = &[
    ("X-Mailer", "Microsoft Outlook 16.0"),
    ("X-Mailer", "Apple Mail (2.3774.300.61.1.2)"),
    ("User-Agent", "Mozilla Thunderbird"),
    ("User-Agent", "Roundcube Webmail/1.6.6"),
    ("X-Mailer", "iPhone Mail (21D61)"),
];

static VOCAB: OnceLock<Vocabulary> = OnceLock::new();

struct Sender {
    name: Option<String>,
    emails: Vec<String>,
    locale: &'static Locale,
    offset: i32,
    company: Option<String>,
    phone: String,
    /// The sending host named in Received; free-mail providers have their own.
    helo: String,
}

struct Slots {
    domain: String,
    invoice: String,
    mailbox: String,
    server: String,
    plan: &'static str,
    custno: String,
}

struct Thread {
    index: u64,
    remaining: u64,
    sender: Sender,
    subject: String,
    slots: Slots,
    ids: Vec<String>,
    /// The previous message's own text, quoted by the next reply.
    last_text: String,
    last_from: String,
    last_ts: i64,
    last_offset: i32,
}

/// What an mbox separator line needs besides the message.
pub struct Envelope {
    pub from: String,
    pub ts: i64,
}

/// The message stream of [`crate::generate`]: an exact-size iterator whose memory does
/// not grow with the number of messages.
pub struct Messages {
    total: u64,
    emitted: u64,
    /// Messages still owed by the open threads; a new thread may only take what is left.
    pending: u64,
    next_thread: u64,
    now: i64,
    customers: u32,
    customer_key: [u8; 32],
    rng: ChaCha8Rng,
    open: Vec<Thread>,
    vocab: &'static Vocabulary,
}

impl Messages {
    pub(crate) fn new(cfg: &SynthConfig) -> Messages {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&cfg.seed.to_le_bytes());
        key[8..16].copy_from_slice(b"messages");
        Messages {
            total: cfg.messages,
            emitted: 0,
            pending: 0,
            next_thread: 0,
            now: cfg.start.timestamp(),
            customers: cfg.customers.max(1),
            customer_key: customer_key(cfg.seed),
            rng: ChaCha8Rng::from_seed(key),
            open: Vec::with_capacity(MAX_OPEN),
            vocab: VOCAB.get_or_init(Vocabulary::new),
        }
    }

    pub(crate) fn next_with_envelope(&mut self) -> Option<(SynthMessage, Envelope)> {
        if self.emitted >= self.total {
            return None;
        }
        let remaining = self.total - self.emitted;
        let may_open = remaining > self.pending && self.open.len() < MAX_OPEN;
        let slot = if self.open.is_empty() || (may_open && self.rng.gen_bool(P_OPEN)) {
            self.open_thread(remaining - self.pending);
            self.open.len() - 1
        } else {
            self.rng.gen_range(0..self.open.len())
        };
        // Taken out so that composing may borrow the rng; the order of `open` changes,
        // deterministically.
        let mut thread = self.open.swap_remove(slot);
        self.now += self.rng.gen_range(1..=240);
        let out = self.compose(&mut thread);
        thread.remaining -= 1;
        self.pending -= 1;
        self.emitted += 1;
        if thread.remaining > 0 {
            self.open.push(thread);
        }
        Some(out)
    }

    fn open_thread(&mut self, budget: u64) {
        let rng = &mut self.rng;
        let mut x = rng.gen_range(0..LEN_WEIGHTS.iter().sum::<u32>());
        let mut len = 1;
        for w in LEN_WEIGHTS {
            if x < w {
                break;
            }
            x -= w;
            len += 1;
        }
        let len = len.min(budget);
        let year = chrono::DateTime::from_timestamp(self.now, 0).map_or(2024, |d| {
            use chrono::Datelike;
            d.year()
        });
        let invoice = format!("INV-{year}-{:05}", rng.gen_range(1..100_000));
        let server = if rng.gen_bool(0.6) {
            format!("web{:02}.quietdesk.example", rng.gen_range(1..40))
        } else {
            format!("vps-{:04}.quietdesk.example", rng.gen_range(1..10_000))
        };
        let plan = pick(rng, PLANS);

        let (sender, slots, subject_pool): (Sender, Slots, &[&str]) = if rng.gen_bool(0.88) {
            let n = self.customers;
            // Skewed: a few customers write much more than the rest, as in real life.
            let u: f64 = rng.gen();
            let i = ((f64::from(n) * u.powf(1.6)) as u32).min(n - 1);
            let p = customer_at(&self.customer_key, i, n);
            let helo = match p.emails[0].split_once('@') {
                Some((_, d)) if d == p.site => format!("mail.{d}"),
                Some((_, d)) => format!("smtp-out{}.{d}", rng.gen_range(1..20)),
                None => format!("mail.{}", p.site),
            };
            let mailbox = if rng.gen_bool(0.5) {
                format!("info@{}", p.site)
            } else {
                p.emails[0].clone()
            };
            let pool: &[&str] = if !p.locale.subjects.is_empty() && rng.gen_bool(0.3) {
                p.locale.subjects
            } else {
                SUBJECTS
            };
            let slots = Slots {
                domain: p.site,
                invoice,
                mailbox,
                server,
                plan,
                custno: format!("C{:06}", u64::from(i) + 1000),
            };
            let sender = Sender {
                name: Some(p.name),
                emails: p.emails,
                locale: p.locale,
                offset: p.offset,
                company: Some(p.company),
                phone: p.phone,
                helo,
            };
            (sender, slots, pool)
        } else {
            let s = stranger(rng);
            let pool: &[&str] = if rng.gen_bool(0.7) {
                STRANGER_SUBJECTS
            } else {
                SUBJECTS
            };
            let slots = Slots {
                mailbox: s.email.clone(),
                domain: s.domain.clone(),
                invoice,
                server,
                plan,
                custno: format!("C{:06}", rng.gen_range(1000..999_999)),
            };
            let sender = Sender {
                name: s.name,
                emails: vec![s.email],
                locale: s.locale,
                offset: s.offset,
                company: None,
                phone: format!(
                    "+1 555 01{:02} {:03}",
                    rng.gen_range(0..100),
                    rng.gen_range(0..1000)
                ),
                helo: format!("mail.{}", s.domain),
            };
            (sender, slots, pool)
        };
        let mut subject = String::new();
        fill(&mut subject, pick(rng, subject_pool), &slots, rng, self.now);
        self.pending += len;
        self.open.push(Thread {
            index: self.next_thread,
            remaining: len,
            sender,
            subject,
            slots,
            ids: Vec::with_capacity(len as usize),
            last_text: String::new(),
            last_from: String::new(),
            last_ts: 0,
            last_offset: 0,
        });
        self.next_thread += 1;
    }

    fn compose(&mut self, th: &mut Thread) -> (SynthMessage, Envelope) {
        let ts = self.now;
        let rng = &mut self.rng;
        let reply = !th.ids.is_empty();
        let s = &th.sender;
        let from = if reply && s.emails.len() > 1 && rng.gen_bool(0.25) {
            &s.emails[1]
        } else {
            &s.emails[0]
        };
        let message_id = format!(
            "<{ts:x}.{:x}.{:08x}@mail.example>",
            self.emitted,
            rng.gen::<u32>()
        );

        // The text as the sender wrote it: fresh part, signature, then the quote.
        let mut text = String::with_capacity(2048);
        fresh_text(&mut text, rng, self.vocab, s, &th.slots, ts);
        let fresh_len = text.len();
        match (&s.name, &s.company) {
            (Some(name), Some(company)) if rng.gen_bool(0.7) => {
                let _ = write!(text, "\r\n-- \r\n{name}\r\n{company}\r\n{}\r\n", s.phone);
            }
            (Some(name), _) => {
                let _ = write!(text, "\r\n-- \r\n{name}\r\n");
            }
            (None, _) if rng.gen_bool(0.3) => text.push_str("\r\nSent from my iPhone\r\n"),
            (None, _) => {}
        }
        if reply {
            text.push_str("\r\n");
            let mut date = String::new();
            rfc2822(&mut date, th.last_ts, th.last_offset);
            let attribution = s
                .locale
                .attribution
                .replace("{d}", &date)
                .replace("{n}", &th.last_from);
            text.push_str(&attribution);
            text.push_str("\r\n");
            for line in th.last_text.split("\r\n").take(MAX_QUOTED) {
                text.push('>');
                if !line.is_empty() {
                    text.push(' ');
                    text.push_str(line);
                }
                text.push_str("\r\n");
            }
        }

        let mut m = String::with_capacity(text.len() * 2 + 1500);
        // Trace fields, newest first (RFC 5321 §4.4).
        let _ = write!(m, "Return-Path: <{from}>\r\n");
        if rng.gen_bool(0.6) {
            let _ = write!(
                m,
                "Received: from mx1.quietdesk.example (mx1.quietdesk.example [198.51.100.25])\r\n\
                 \tby imap.quietdesk.example (Dovecot) with LMTP id {:016x}\r\n\
                 \tfor <{SUPPORT}>; ",
                rng.gen::<u64>()
            );
            rfc2822(&mut m, ts + 2, 0);
            m.push_str("\r\n");
        }
        let ip = match rng.gen_range(0..20) {
            0..=2 => format!(
                "IPv6:2001:db8:{:x}::{:x}",
                rng.gen::<u16>(),
                rng.gen_range(1..0xffff)
            ),
            3..=9 => format!("192.0.2.{}", rng.gen_range(1..255)),
            10..=15 => format!("203.0.113.{}", rng.gen_range(1..255)),
            _ => format!("198.51.100.{}", rng.gen_range(1..255)),
        };
        let _ = write!(
            m,
            "Received: from {h} ({h} [{ip}])\r\n\tby mx1.quietdesk.example (Postfix) with ESMTPS id {:010X}\r\n\tfor <{SUPPORT}>; ",
            rng.gen::<u64>() & 0xff_ffff_ffff,
            h = s.helo,
        );
        rfc2822(&mut m, ts + 1, 0);
        m.push_str("\r\nDate: ");
        rfc2822(&mut m, ts, s.offset);
        m.push_str("\r\nFrom: ");
        let mut from_display = String::new();
        if let Some(name) = &s.name {
            encoded_words(&mut m, name, rng.gen_bool(0.3));
            let _ = write!(m, " <{from}>");
            let _ = write!(from_display, "{name} <{from}>");
        } else {
            m.push_str(from);
            from_display.push_str(from);
        }
        if rng.gen_bool(0.5) {
            let _ = write!(m, "\r\nTo: Support <{SUPPORT}>");
        } else {
            let _ = write!(m, "\r\nTo: {SUPPORT}");
        }
        m.push_str("\r\nSubject: ");
        if reply {
            m.push_str("Re: ");
        }
        encoded_words(&mut m, &th.subject, rng.gen_bool(0.3));
        let _ = write!(m, "\r\nMessage-ID: {message_id}\r\n");
        if let Some(last) = th.ids.last() {
            let _ = write!(m, "In-Reply-To: {last}\r\nReferences:");
            for (k, id) in th.ids.iter().enumerate() {
                // One id per line: a folded header continues with white space.
                if k > 0 {
                    m.push_str("\r\n");
                }
                m.push(' ');
                m.push_str(id);
            }
            m.push_str("\r\n");
        }
        m.push_str("MIME-Version: 1.0\r\n");
        if rng.gen_bool(0.6) {
            let (h, v) = pick(rng, MAILERS);
            let _ = write!(m, "{h}: {v}\r\n");
        }

        let kind = rng.gen_range(0..100);
        let has_attachment = kind >= 90;
        if kind < 70 {
            text_part(&mut m, "plain", &text, rng);
        } else {
            let boundary = format!("=_qd{:x}_{:08x}", self.emitted, rng.gen::<u32>());
            let (sub, preamble) = if has_attachment {
                ("mixed", true)
            } else {
                ("alternative", false)
            };
            let _ = write!(
                m,
                "Content-Type: multipart/{sub}; boundary=\"{boundary}\"\r\n\r\n"
            );
            if preamble {
                m.push_str("This is a multi-part message in MIME format.\r\n");
            }
            let _ = write!(m, "\r\n--{boundary}\r\n");
            text_part(&mut m, "plain", &text, rng);
            let _ = write!(m, "--{boundary}\r\n");
            if has_attachment {
                let a = attach::make(rng, &th.slots.domain, &th.slots.invoice, ts);
                let _ = write!(
                    m,
                    "Content-Type: {}; name=\"{f}\"\r\nContent-Disposition: attachment; filename=\"{f}\"\r\n\
                     Content-Transfer-Encoding: base64\r\n\r\n",
                    a.content_type,
                    f = a.filename
                );
                base64_body(&mut m, &a.data);
            } else {
                let mut html = String::with_capacity(text.len() * 2);
                to_html(&mut html, &text);
                text_part(&mut m, "html", &html, rng);
            }
            let _ = write!(m, "--{boundary}--\r\n");
        }

        text.truncate(fresh_len);
        th.last_text = text;
        th.last_from = from_display;
        th.last_ts = ts;
        th.last_offset = s.offset;
        th.ids.push(message_id.clone());
        let msg = SynthMessage {
            raw: m.into_bytes(),
            message_id,
            thread: th.index,
            is_reply: reply,
            has_attachment,
        };
        (
            msg,
            Envelope {
                from: from.clone(),
                ts,
            },
        )
    }
}

impl Iterator for Messages {
    type Item = SynthMessage;

    fn next(&mut self) -> Option<SynthMessage> {
        self.next_with_envelope().map(|(m, _)| m)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = usize::try_from(self.total - self.emitted).unwrap_or(usize::MAX);
        (left, Some(left))
    }
}

impl ExactSizeIterator for Messages {}
impl std::iter::FusedIterator for Messages {}

/// Writes the Content-Type and transfer encoding lines, the blank line and the body of
/// one text part. ASCII goes as 7bit; UTF-8 mostly as quoted-printable, sometimes 8bit,
/// as real clients do.
fn text_part(out: &mut String, subtype: &str, text: &str, rng: &mut ChaCha8Rng) {
    if text.is_ascii() {
        let _ = write!(
            out,
            "Content-Type: text/{subtype}; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n{text}"
        );
    } else if rng.gen_bool(0.75) {
        let _ = write!(
            out,
            "Content-Type: text/{subtype}; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        );
        quoted_printable(out, text);
    } else {
        let _ = write!(
            out,
            "Content-Type: text/{subtype}; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{text}"
        );
    }
}

fn to_html(out: &mut String, text: &str) {
    out.push_str(
        "<html><head><meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-8\"></head>\r\n<body>\r\n<div>\r\n",
    );
    let mut quoting = false;
    for line in text.trim_end_matches("\r\n").split("\r\n") {
        let (quoted, content) = match line.strip_prefix('>') {
            Some(rest) => (true, rest.strip_prefix(' ').unwrap_or(rest)),
            None => (false, line),
        };
        if quoted != quoting {
            out.push_str(if quoted {
                "</div>\r\n<blockquote style=\"margin:0 0 0 .8ex;border-left:1px solid #ccc;padding-left:1ex\">\r\n"
            } else {
                "</blockquote>\r\n<div>\r\n"
            });
            quoting = quoted;
        }
        html_escape(out, content);
        out.push_str("<br>\r\n");
    }
    out.push_str(if quoting {
        "</blockquote>\r\n"
    } else {
        "</div>\r\n"
    });
    out.push_str("</body></html>\r\n");
}

/// Word-wrapping writer for one body.
struct Wrap<'a> {
    out: &'a mut String,
    col: usize,
    lines: usize,
}

impl Wrap<'_> {
    fn word(&mut self, w: &str) {
        if self.col > 0 && self.col + 1 + w.len() > WRAP {
            self.out.push_str("\r\n");
            self.lines += 1;
            self.col = 0;
        } else if self.col > 0 {
            self.out.push(' ');
            self.col += 1;
        }
        self.out.push_str(w);
        self.col += w.len();
    }

    fn capitalized(&mut self, w: &str) {
        let mut chars = w.chars();
        match chars.next() {
            Some(c) if c.is_ascii_lowercase() => {
                let mut s = String::with_capacity(w.len());
                s.push(c.to_ascii_uppercase());
                s.push_str(chars.as_str());
                self.word(&s);
            }
            _ => self.word(w),
        }
    }

    fn punct(&mut self, c: char) {
        self.out.push(c);
        self.col += 1;
    }

    /// Ends the current line, if any.
    fn newline(&mut self) {
        self.out.push_str("\r\n");
        self.lines += 1;
        self.col = 0;
    }

    fn line(&mut self, text: &str) {
        self.out.push_str(text);
        self.newline();
    }
}

/// Greeting, paragraphs and closing: 3 to 30 lines, short messages far more common.
fn fresh_text(
    out: &mut String,
    rng: &mut ChaCha8Rng,
    vocab: &Vocabulary,
    s: &Sender,
    slots: &Slots,
    ts: i64,
) {
    let u: f64 = rng.gen();
    let target = 3 + (27.0 * u * u) as usize;
    // Many non-English customers still write English, greeting in their own language.
    let locale = s.locale;
    let english = &LOCALES[0];
    let mut w = Wrap {
        out,
        col: 0,
        lines: 0,
    };
    let greetings = if rng.gen_bool(0.7) {
        locale.greetings
    } else {
        english.greetings
    };
    w.line(pick(rng, greetings));
    w.newline();
    let mut scratch = String::with_capacity(128);
    loop {
        if w.lines > 2 {
            w.newline(); // blank line between paragraphs
        }
        let sentences = rng.gen_range(1..=4);
        for k in 0..sentences {
            if k == 0 && rng.gen_bool(0.04) {
                for word in pick(rng, FROM_STARTS).split(' ') {
                    w.word(word);
                }
                zipf_words(&mut w, rng, vocab, false);
                w.punct('.');
            } else {
                match rng.gen_range(0..100) {
                    0..=29 => {
                        scratch.clear();
                        fill(&mut scratch, pick(rng, TEMPLATES), slots, rng, ts);
                        words(&mut w, &scratch);
                    }
                    30..=37 if !locale.lines.is_empty() => words(&mut w, pick(rng, locale.lines)),
                    _ => {
                        zipf_words(&mut w, rng, vocab, true);
                        w.punct(if rng.gen_bool(0.15) { '?' } else { '.' });
                    }
                }
            }
            if w.lines + 2 >= target {
                break;
            }
        }
        if w.col > 0 {
            w.newline();
        }
        if w.lines + 2 >= target {
            break;
        }
    }
    w.newline();
    let closings = if rng.gen_bool(0.7) {
        locale.closings
    } else {
        english.closings
    };
    w.line(pick(rng, closings));
    if let Some(name) = &s.name {
        w.line(name.split(' ').next().unwrap_or(name));
    }
}

fn words(w: &mut Wrap<'_>, text: &str) {
    for word in text.split(' ') {
        w.word(word);
    }
}

fn zipf_words(w: &mut Wrap<'_>, rng: &mut ChaCha8Rng, vocab: &Vocabulary, capitalize: bool) {
    let n = rng.gen_range(5..=16);
    for k in 0..n {
        let word = vocab.sample(rng);
        if k == 0 && capitalize {
            w.capitalized(word);
        } else {
            w.word(word);
        }
    }
}

/// Expands `{slot}` placeholders of a subject or sentence template.
fn fill(out: &mut String, template: &str, slots: &Slots, rng: &mut ChaCha8Rng, ts: i64) {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        let key = &rest[open + 1..open + close];
        match key {
            "domain" => out.push_str(&slots.domain),
            "invoice" => out.push_str(&slots.invoice),
            "mailbox" => out.push_str(&slots.mailbox),
            "server" => out.push_str(&slots.server),
            "plan" => out.push_str(slots.plan),
            "custno" => out.push_str(&slots.custno),
            "phone" => {
                let _ = write!(
                    out,
                    "+1 555 01{:02} {:03}",
                    rng.gen_range(0..100),
                    rng.gen_range(0..1000)
                );
            }
            "hh" => {
                let _ = write!(out, "{:02}", rng.gen_range(0..24));
            }
            "mm" => {
                let _ = write!(out, "{:02}", rng.gen_range(0..60));
            }
            "ip" => {
                let _ = write!(out, "203.0.113.{}", rng.gen_range(1..255));
            }
            "code" => out.push_str(pick(rng, CODES)),
            "error" => out.push_str(pick(rng, ERRORS)),
            "smtp" => out.push_str(pick(rng, SMTP)),
            "path" => out.push_str(pick(rng, PATHS)),
            "php" => out.push_str(pick(rng, PHP)),
            "amount" => {
                let _ = write!(
                    out,
                    "{}.{:02}",
                    rng.gen_range(5..2000),
                    rng.gen_range(0..100)
                );
            }
            "pct" => {
                let _ = write!(out, "{}", rng.gen_range(80..100));
            }
            "date" => {
                let day = ts - 86_400 * rng.gen_range(1..30);
                let d = chrono::DateTime::from_timestamp(day, 0).unwrap_or_default();
                let _ = write!(out, "{}", d.format("%Y-%m-%d"));
            }
            _ => out.push_str(&rest[open..=open + close]),
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
}

/// The mbox separator line, e.g. `From jan@x.example Mon Jan  1 09:30:12 2024`.
pub fn separator(out: &mut String, env: &Envelope) {
    out.push_str("From ");
    out.push_str(&env.from);
    out.push(' ');
    asctime(out, env.ts);
    out.push('\n');
}
