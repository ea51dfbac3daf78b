//! The staff query language.
//!
//! ```text
//! query   = { [ "-" ] term | "OR" }          terms are ANDed, OR joins its two neighbours
//! term    = word | '"' phrase '"' | field ":" value
//! field   = from | to | subject | status | ticket | before | after | has | tag
//! value   = bare-text | '"' text '"'
//! ```
//!
//! Words and phrases are analysed here, with the analyzer the index uses, so a parsed
//! [`Query`] holds index terms and knows whether anything is left to search for.

use std::fmt;

use chrono::{NaiveDate, NaiveTime};
use qd_core::TicketStatus;
use tantivy::tokenizer::TextAnalyzer;

use crate::schema::{analyze, keyword_analyzer, text_analyzer};

/// A parsed staff query. Build one with [`Query::parse`], run it with
/// [`SearchIndex::search`](crate::SearchIndex::search).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub(crate) clauses: Vec<Clause>,
}

/// One conjunct of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Clause {
    /// At least one of these must match (one atom unless joined with OR).
    Require(Vec<Atom>),
    /// This must not match.
    Exclude(Atom),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Atom {
    /// Analysed tokens; more than one makes a phrase.
    Text {
        scope: Scope,
        tokens: Vec<String>,
    },
    Status(TicketStatus),
    Ticket(i64),
    /// Seconds since the epoch of midnight UTC starting the given day; exclusive.
    Before(i64),
    /// Seconds since the epoch of midnight UTC starting the given day; inclusive.
    After(i64),
    HasAttachment,
    Tag(String),
}

/// Which text fields a word or phrase is looked up in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// A bare word: subject, body, from or to.
    Anywhere,
    /// A quoted phrase.
    SubjectOrBody,
    Subject,
    From,
    To,
}

impl Atom {
    /// Free text ranks hits by relevance; field filters only narrow them.
    pub(crate) fn ranks(&self) -> bool {
        matches!(
            self,
            Atom::Text {
                scope: Scope::Anywhere | Scope::SubjectOrBody,
                ..
            }
        )
    }
}

impl Query {
    /// Parses what staff typed. An error names what is wrong and the column (1-based,
    /// in characters) where it starts.
    pub fn parse(input: &str) -> Result<Query, QueryError> {
        Parser::new(input).parse()
    }

    /// True when nothing is left to search for (blank input, or only punctuation).
    pub fn is_empty(&self) -> bool {
        self.clauses.is_empty()
    }

    /// Whether hits are ranked by relevance; otherwise they come newest first.
    pub(crate) fn ranks(&self) -> bool {
        self.clauses.iter().any(|c| match c {
            Clause::Require(atoms) => atoms.iter().any(Atom::ranks),
            Clause::Exclude(_) => false,
        })
    }

    /// The dates every hit must lie in, from `after:` (inclusive) and `before:` (exclusive)
    /// terms outside OR groups, as seconds since the epoch.
    pub(crate) fn date_limits(&self) -> (Option<i64>, Option<i64>) {
        let (mut after, mut before) = (None, None);
        for clause in &self.clauses {
            match clause {
                Clause::Require(atoms) => match atoms.as_slice() {
                    [Atom::After(t)] => after = after.max(Some(*t)),
                    [Atom::Before(t)] => before = Some(before.map_or(*t, |b: i64| b.min(*t))),
                    _ => {}
                },
                Clause::Exclude(_) => {}
            }
        }
        (after, before)
    }

    /// Tokens worth highlighting in a snippet: words and phrases the hit must contain.
    pub(crate) fn highlight_tokens(&self) -> impl Iterator<Item = &str> {
        self.clauses
            .iter()
            .filter_map(|c| match c {
                Clause::Require(atoms) => Some(atoms),
                Clause::Exclude(_) => None,
            })
            .flatten()
            .filter_map(|atom| match atom {
                Atom::Text {
                    scope: Scope::Anywhere | Scope::SubjectOrBody | Scope::Subject,
                    tokens,
                } => Some(tokens),
                _ => None,
            })
            .flatten()
            .map(String::as_str)
    }
}

/// A query staff typed that cannot be run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {kind}")]
pub struct QueryError {
    /// 1-based, counted in characters.
    pub column: usize,
    pub kind: QueryErrorKind,
}

/// What is wrong with a query.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueryErrorKind {
    /// `form:alice`; `field` is what was typed, colon included.
    UnknownField {
        field: String,
    },
    /// `from:` with nothing (searchable) after it.
    MissingValue {
        field: &'static str,
    },
    BadDate {
        field: &'static str,
        value: String,
    },
    BadStatus {
        value: String,
    },
    BadTicket {
        value: String,
    },
    BadHas {
        value: String,
    },
    UnclosedQuote,
    OrWithoutLeft,
    OrWithoutRight,
    /// `-a OR b` or `a OR -b`.
    ExcludedOr,
}

impl fmt::Display for QueryErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryErrorKind::UnknownField { field } => write!(
                f,
                "unknown field \"{field}\" (known: from, to, subject, status, ticket, before, after, has, tag)"
            ),
            QueryErrorKind::MissingValue { field } => write!(f, "{field} needs a value"),
            QueryErrorKind::BadDate { field, value } => {
                write!(f, "bad date \"{value}\" in {field}, expected YYYY-MM-DD")
            }
            QueryErrorKind::BadStatus { value } => write!(
                f,
                "unknown status \"{value}\" in status:, expected open, pending or closed"
            ),
            QueryErrorKind::BadTicket { value } => write!(
                f,
                "bad ticket \"{value}\" in ticket:, expected a number such as 1234 or #QD-1234"
            ),
            QueryErrorKind::BadHas { value } => {
                write!(f, "unknown \"{value}\" in has:, expected attachment")
            }
            QueryErrorKind::UnclosedQuote => f.write_str("unclosed quote"),
            QueryErrorKind::OrWithoutLeft => f.write_str("OR needs a term before it"),
            QueryErrorKind::OrWithoutRight => f.write_str("OR needs a term after it"),
            QueryErrorKind::ExcludedOr => f.write_str("OR cannot join an excluded (-) term"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    From,
    To,
    Subject,
    Status,
    Ticket,
    Before,
    After,
    Has,
    Tag,
}

impl Field {
    fn from_name(name: &str) -> Option<Field> {
        Some(match name.to_ascii_lowercase().as_str() {
            "from" => Field::From,
            "to" => Field::To,
            "subject" => Field::Subject,
            "status" => Field::Status,
            "ticket" => Field::Ticket,
            "before" => Field::Before,
            "after" => Field::After,
            "has" => Field::Has,
            "tag" => Field::Tag,
            _ => return None,
        })
    }

    fn label(self) -> &'static str {
        match self {
            Field::From => "from:",
            Field::To => "to:",
            Field::Subject => "subject:",
            Field::Status => "status:",
            Field::Ticket => "ticket:",
            Field::Before => "before:",
            Field::After => "after:",
            Field::Has => "has:",
            Field::Tag => "tag:",
        }
    }
}

enum Item {
    Or,
    /// `atom` is `None` when the term analysed to nothing (`&`, a lone `-`): it is dropped.
    Term {
        negated: bool,
        atom: Option<Atom>,
    },
}

/// What the previous term left behind, for OR to join.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Last {
    Nothing,
    Required,
    Excluded,
    Dropped,
}

/// Subject prefixes of replies and forwards in the languages our customers write
/// (`Re:Invoice`, `AW:Rechnung`, `TR:Facture`), pasted into a query without a space: words,
/// not unknown fields.
const REPLY_PREFIXES: &[&str] = &[
    "re", "fw", "fwd", "aw", "wg", "tr", "sv", "vs", "antw", "doorst", "ref",
];

/// What word processors and phones type for the query syntax's ASCII: curly or angled
/// double quotes are quotes, an en dash, em dash or minus sign is a minus.
fn plain_punctuation(c: char) -> char {
    match c {
        '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{201F}' | '\u{00AB}' | '\u{00BB}' => '"',
        '\u{2013}' | '\u{2014}' | '\u{2212}' => '-',
        other => other,
    }
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
    text: TextAnalyzer,
    keyword: TextAnalyzer,
}

impl Parser {
    fn new(input: &str) -> Parser {
        Parser {
            chars: input.chars().map(plain_punctuation).collect(),
            pos: 0,
            text: text_analyzer(),
            keyword: keyword_analyzer(),
        }
    }

    fn parse(mut self) -> Result<Query, QueryError> {
        let mut clauses: Vec<Clause> = Vec::new();
        let mut last = Last::Nothing;
        // Column of an OR still waiting for its right-hand term.
        let mut pending_or: Option<usize> = None;
        while let Some((column, item)) = self.next_item()? {
            match item {
                Item::Or => {
                    if let Some(or_column) = pending_or {
                        return Err(err(or_column, QueryErrorKind::OrWithoutRight));
                    }
                    match last {
                        Last::Required => pending_or = Some(column),
                        Last::Excluded => return Err(err(column, QueryErrorKind::ExcludedOr)),
                        Last::Nothing | Last::Dropped => {
                            return Err(err(column, QueryErrorKind::OrWithoutLeft))
                        }
                    }
                }
                Item::Term { negated, atom } => {
                    if let Some(or_column) = pending_or.take() {
                        if negated {
                            return Err(err(column, QueryErrorKind::ExcludedOr));
                        }
                        let Some(atom) = atom else {
                            return Err(err(or_column, QueryErrorKind::OrWithoutRight));
                        };
                        if let Some(Clause::Require(atoms)) = clauses.last_mut() {
                            atoms.push(atom);
                        }
                        continue;
                    }
                    last = match (atom, negated) {
                        (None, _) => Last::Dropped,
                        (Some(atom), false) => {
                            clauses.push(Clause::Require(vec![atom]));
                            Last::Required
                        }
                        (Some(atom), true) => {
                            clauses.push(Clause::Exclude(atom));
                            Last::Excluded
                        }
                    };
                }
            }
        }
        if let Some(or_column) = pending_or {
            return Err(err(or_column, QueryErrorKind::OrWithoutRight));
        }
        Ok(Query { clauses })
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, pos: usize) -> Option<char> {
        self.chars.get(pos).copied()
    }

    fn ends_token(c: Option<char>) -> bool {
        c.is_none_or(char::is_whitespace)
    }

    fn next_item(&mut self) -> Result<Option<(usize, Item)>, QueryError> {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
        if self.peek().is_none() {
            return Ok(None);
        }
        let column = self.pos + 1;
        if self.peek() == Some('O')
            && self.peek_at(self.pos + 1) == Some('R')
            && Self::ends_token(self.peek_at(self.pos + 2))
        {
            self.pos += 2;
            return Ok(Some((column, Item::Or)));
        }
        let negated = self.peek() == Some('-') && !Self::ends_token(self.peek_at(self.pos + 1));
        if negated {
            self.pos += 1;
        }
        let atom = self.term()?;
        Ok(Some((column, Item::Term { negated, atom })))
    }

    fn term(&mut self) -> Result<Option<Atom>, QueryError> {
        let column = self.pos + 1;
        if self.peek() == Some('"') {
            let phrase = self.quoted()?;
            return Ok(self.text_atom(Scope::SubjectOrBody, &phrase));
        }
        let name_end = (self.pos..self.chars.len())
            .find(|&i| !self.chars[i].is_ascii_alphabetic())
            .unwrap_or(self.chars.len());
        if name_end > self.pos && self.peek_at(name_end) == Some(':') {
            let name: String = self.chars[self.pos..name_end].iter().collect();
            if let Some(field) = Field::from_name(&name) {
                self.pos = name_end + 1;
                return self.field_value(field, column).map(Some);
            }
            // "Re:" pasted from a subject and "https://..." are words, not fields.
            let after = self.peek_at(name_end + 1);
            let is_url = after == Some('/') && self.peek_at(name_end + 2) == Some('/');
            let is_reply_prefix = REPLY_PREFIXES.contains(&name.to_ascii_lowercase().as_str());
            if !Self::ends_token(after) && !is_url && !is_reply_prefix {
                return Err(err(
                    column,
                    QueryErrorKind::UnknownField {
                        field: format!("{name}:"),
                    },
                ));
            }
        }
        let word = self.bare();
        Ok(self.text_atom(Scope::Anywhere, &word))
    }

    fn field_value(&mut self, field: Field, column: usize) -> Result<Atom, QueryError> {
        let value = if self.peek() == Some('"') {
            self.quoted()?
        } else {
            self.bare()
        };
        let value = value.trim();
        let missing = || {
            err(
                column,
                QueryErrorKind::MissingValue {
                    field: field.label(),
                },
            )
        };
        if value.is_empty() {
            return Err(missing());
        }
        let scope = match field {
            Field::From => Scope::From,
            Field::To => Scope::To,
            Field::Subject => Scope::Subject,
            Field::Status => {
                return value
                    .parse::<TicketStatus>()
                    .map(Atom::Status)
                    .map_err(|_| {
                        err(
                            column,
                            QueryErrorKind::BadStatus {
                                value: value.to_string(),
                            },
                        )
                    })
            }
            Field::Ticket => {
                return ticket_number(value).map(Atom::Ticket).ok_or_else(|| {
                    err(
                        column,
                        QueryErrorKind::BadTicket {
                            value: value.to_string(),
                        },
                    )
                })
            }
            Field::Before | Field::After => {
                let Some(start) = day_start(value) else {
                    return Err(err(
                        column,
                        QueryErrorKind::BadDate {
                            field: field.label(),
                            value: value.to_string(),
                        },
                    ));
                };
                return Ok(if field == Field::Before {
                    Atom::Before(start)
                } else {
                    Atom::After(start)
                });
            }
            Field::Has => {
                return match value.to_ascii_lowercase().as_str() {
                    "attachment" | "attachments" => Ok(Atom::HasAttachment),
                    _ => Err(err(
                        column,
                        QueryErrorKind::BadHas {
                            value: value.to_string(),
                        },
                    )),
                }
            }
            Field::Tag => {
                return analyze(&mut self.keyword, value)
                    .into_iter()
                    .next()
                    .map(Atom::Tag)
                    .ok_or_else(missing)
            }
        };
        self.text_atom(scope, value).ok_or_else(missing)
    }

    fn text_atom(&mut self, scope: Scope, text: &str) -> Option<Atom> {
        let tokens = analyze(&mut self.text, text);
        (!tokens.is_empty()).then_some(Atom::Text { scope, tokens })
    }

    /// Reads up to the next whitespace.
    fn bare(&mut self) -> String {
        let start = self.pos;
        while !Self::ends_token(self.peek()) {
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().collect()
    }

    /// Reads a `"…"` starting at the opening quote; returns what is between the quotes.
    fn quoted(&mut self) -> Result<String, QueryError> {
        let column = self.pos + 1;
        let start = self.pos + 1;
        let Some(len) = self.chars[start..].iter().position(|&c| c == '"') else {
            return Err(err(column, QueryErrorKind::UnclosedQuote));
        };
        self.pos = start + len + 1;
        Ok(self.chars[start..start + len].iter().collect())
    }
}

fn err(column: usize, kind: QueryErrorKind) -> QueryError {
    QueryError { column, kind }
}

/// `1234`, `#1234`, `#QD-1234`, `[#QD-1234]`: the digits at the end are the number, so a
/// reference copied from a subject line works whatever the configured format. What comes
/// before them holds no digit and is not a sign: `-5`, `1.5`, `1,234` and `2024-01` are
/// not ticket numbers, rather than tickets 5, 5, 234 and 1.
fn ticket_number(value: &str) -> Option<i64> {
    let value = value.trim_end_matches(|c: char| !c.is_alphanumeric());
    let digits_start = value
        .char_indices()
        .rev()
        .take_while(|(_, c)| c.is_ascii_digit())
        .last()
        .map(|(i, _)| i)?;
    let prefix = &value[..digits_start];
    if prefix.chars().any(|c| c.is_ascii_digit()) || matches!(prefix, "-" | "+") {
        return None;
    }
    value[digits_start..].parse().ok()
}

/// Midnight UTC at the start of a `YYYY-MM-DD` day, in seconds since the epoch. Strict about
/// the shape so that `2024-3-1` is not silently read as something else.
fn day_start(value: &str) -> Option<i64> {
    let shape_ok = value.len() == 10
        && value.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    if !shape_ok {
        return None;
    }
    let day = NaiveDate::parse_from_str(value, "%Y-%m-%d").ok()?;
    Some(day.and_time(NaiveTime::MIN).and_utc().timestamp())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parse(s: &str) -> Vec<Clause> {
        Query::parse(s).unwrap().clauses
    }

    fn fail(s: &str) -> QueryError {
        Query::parse(s).unwrap_err()
    }

    fn text(scope: Scope, tokens: &[&str]) -> Atom {
        Atom::Text {
            scope,
            tokens: tokens.iter().map(|t| t.to_string()).collect(),
        }
    }

    fn req(atom: Atom) -> Clause {
        Clause::Require(vec![atom])
    }

    fn ts(day: &str) -> i64 {
        day_start(day).unwrap()
    }

    #[test]
    fn words_are_anded_lowercased_and_folded() {
        assert_eq!(
            parse("Invoice  CAFÉ"),
            [
                req(text(Scope::Anywhere, &["invoice"])),
                req(text(Scope::Anywhere, &["cafe"]))
            ]
        );
    }

    #[test]
    fn a_word_with_punctuation_is_a_phrase_over_its_parts() {
        assert_eq!(
            parse("alice@example.com"),
            [req(text(Scope::Anywhere, &["alice", "example", "com"]))]
        );
    }

    #[test]
    fn quoted_phrase_searches_subject_or_body() {
        assert_eq!(
            parse("\"Late Payment\" x"),
            [
                req(text(Scope::SubjectOrBody, &["late", "payment"])),
                req(text(Scope::Anywhere, &["x"]))
            ]
        );
    }

    #[test]
    fn minus_excludes() {
        assert_eq!(
            parse("refund -paid -\"final notice\" -status:closed"),
            [
                req(text(Scope::Anywhere, &["refund"])),
                Clause::Exclude(text(Scope::Anywhere, &["paid"])),
                Clause::Exclude(text(Scope::SubjectOrBody, &["final", "notice"])),
                Clause::Exclude(Atom::Status(TicketStatus::Closed)),
            ]
        );
    }

    #[test]
    fn or_joins_its_neighbours() {
        assert_eq!(
            parse("a b OR c OR tag:x d"),
            [
                req(text(Scope::Anywhere, &["a"])),
                Clause::Require(vec![
                    text(Scope::Anywhere, &["b"]),
                    text(Scope::Anywhere, &["c"]),
                    Atom::Tag("x".into())
                ]),
                req(text(Scope::Anywhere, &["d"])),
            ]
        );
        // Only the upper-case operator; "or" and "ORder" are words.
        assert_eq!(parse("or ORder").len(), 2);
    }

    #[test]
    fn address_fields() {
        assert_eq!(
            parse("from:Alice@Example.com to:bob FROM:\"Alice Smith\""),
            [
                req(text(Scope::From, &["alice", "example", "com"])),
                req(text(Scope::To, &["bob"])),
                req(text(Scope::From, &["alice", "smith"])),
            ]
        );
    }

    #[test]
    fn subject_word_and_phrase() {
        assert_eq!(
            parse("subject:invoice subject:\"march invoice\""),
            [
                req(text(Scope::Subject, &["invoice"])),
                req(text(Scope::Subject, &["march", "invoice"])),
            ]
        );
    }

    #[test]
    fn filters() {
        assert_eq!(
            parse("status:Pending ticket:1234 ticket:#QD-77 ticket:[#QD-5] has:attachment tag:\"Needs Review\""),
            [
                req(Atom::Status(TicketStatus::Pending)),
                req(Atom::Ticket(1234)),
                req(Atom::Ticket(77)),
                req(Atom::Ticket(5)),
                req(Atom::HasAttachment),
                req(Atom::Tag("needs review".into())),
            ]
        );
    }

    #[test]
    fn dates_are_utc_day_starts() {
        assert_eq!(
            parse("after:2024-01-31 before:2024-02-29"),
            [
                req(Atom::After(1_706_659_200)),
                req(Atom::Before(ts("2024-02-29")))
            ]
        );
    }

    #[test]
    fn punctuation_only_terms_leave_an_empty_query() {
        assert!(Query::parse("  & - ... ").unwrap().is_empty());
        assert!(Query::parse("").unwrap().is_empty());
        assert!(!Query::parse("x").unwrap().is_empty());
    }

    #[test]
    fn pasted_reply_prefix_and_urls_are_words() {
        assert_eq!(
            parse("Re: https://example.com/x"),
            [
                req(text(Scope::Anywhere, &["re"])),
                req(text(Scope::Anywhere, &["https", "example", "com", "x"])),
            ]
        );
    }

    #[test]
    fn typed_punctuation_means_the_ascii_syntax() {
        assert_eq!(
            parse("\u{201C}late payment\u{201D} \u{2013}paid"),
            parse("\"late payment\" -paid")
        );
        assert_eq!(
            parse("\u{00AB}facture impay\u{00E9}e\u{00BB} \u{2212}paid \u{2014}x"),
            parse("\"facture impay\u{00E9}e\" -paid -x")
        );
        assert!(matches!(parse("\u{2013}paid")[..], [Clause::Exclude(_)]));
        // An apostrophe is no quote.
        assert_eq!(
            parse("l\u{2019}\u{00E9}t\u{00E9}"),
            [req(text(Scope::Anywhere, &["l", "ete"]))]
        );
    }

    #[test]
    fn reply_prefixes_glued_to_a_word_are_words() {
        assert_eq!(
            parse("Re:Invoice"),
            [req(text(Scope::Anywhere, &["re", "invoice"]))]
        );
        assert_eq!(
            parse("AW:Rechnung"),
            [req(text(Scope::Anywhere, &["aw", "rechnung"]))]
        );
        assert!(
            Query::parse("form:alice").is_err(),
            "a mistyped field still is one"
        );
    }

    #[test]
    fn date_limits_take_the_narrowest_bounds_outside_or() {
        let q = Query::parse("after:2024-01-01 after:2024-02-01 before:2024-05-01 before:2024-04-01 x OR before:2020-01-01").unwrap();
        assert_eq!(
            q.date_limits(),
            (Some(ts("2024-02-01")), Some(ts("2024-04-01")))
        );
        assert_eq!(
            Query::parse("-after:2024-01-01").unwrap().date_limits(),
            (None, None)
        );
    }

    #[test]
    fn ranking_depends_on_free_text() {
        assert!(Query::parse("invoice status:open").unwrap().ranks());
        assert!(Query::parse("\"a b\"").unwrap().ranks());
        assert!(!Query::parse("from:alice status:open -invoice")
            .unwrap()
            .ranks());
    }

    #[test]
    fn unknown_field_names_the_known_ones() {
        let e = fail("x form:alice");
        assert_eq!(e.column, 3);
        assert_eq!(
            e.to_string(),
            "column 3: unknown field \"form:\" (known: from, to, subject, status, ticket, before, after, has, tag)"
        );
    }

    #[test]
    fn bad_dates() {
        let e = fail("before:2024-13-01");
        assert_eq!(
            e.kind,
            QueryErrorKind::BadDate {
                field: "before:",
                value: "2024-13-01".into()
            }
        );
        assert_eq!(
            e.to_string(),
            "column 1: bad date \"2024-13-01\" in before:, expected YYYY-MM-DD"
        );
        for bad in [
            "after:2024-3-1",
            "after:2024-02-30",
            "after:yesterday",
            "after:+2024-01-01",
        ] {
            assert!(
                matches!(
                    fail(bad).kind,
                    QueryErrorKind::BadDate {
                        field: "after:",
                        ..
                    }
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_values() {
        assert_eq!(
            fail("status:opne").kind,
            QueryErrorKind::BadStatus {
                value: "opne".into()
            }
        );
        assert!(fail("status:opne")
            .to_string()
            .contains("open, pending or closed"));
        assert_eq!(
            fail("ticket:QD-").kind,
            QueryErrorKind::BadTicket {
                value: "QD-".into()
            }
        );
        assert!(matches!(
            fail("ticket:99999999999999999999999").kind,
            QueryErrorKind::BadTicket { .. }
        ));
        assert_eq!(
            fail("has:pdf").kind,
            QueryErrorKind::BadHas {
                value: "pdf".into()
            }
        );
    }

    #[test]
    fn missing_values() {
        for (q, field) in [
            ("from:", "from:"),
            ("a subject: b", "subject:"),
            ("to:\"\"", "to:"),
            ("tag:\"  \"", "tag:"),
            ("from:@@", "from:"),
        ] {
            let e = fail(q);
            assert_eq!(e.kind, QueryErrorKind::MissingValue { field }, "{q}");
        }
        assert_eq!(fail("a subject: b").column, 3);
        assert_eq!(fail("from:").to_string(), "column 1: from: needs a value");
    }

    #[test]
    fn unclosed_quotes() {
        let e = fail("ab \"late payment");
        assert_eq!((e.column, e.kind), (4, QueryErrorKind::UnclosedQuote));
        assert_eq!(fail("subject:\"x").column, 9);
    }

    #[test]
    fn misplaced_or() {
        assert_eq!(fail("OR a").kind, QueryErrorKind::OrWithoutLeft);
        let e = fail("a OR");
        assert_eq!((e.column, e.kind), (3, QueryErrorKind::OrWithoutRight));
        assert_eq!(fail("a OR OR b").kind, QueryErrorKind::OrWithoutRight);
        assert_eq!(fail("a OR &").kind, QueryErrorKind::OrWithoutRight);
        assert_eq!(fail("-a OR b").kind, QueryErrorKind::ExcludedOr);
        let e = fail("a OR -b");
        assert_eq!((e.column, e.kind), (6, QueryErrorKind::ExcludedOr));
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        assert_eq!(fail("ééé form:x").column, 5);
    }

    #[test]
    fn ticket_numbers() {
        assert_eq!(ticket_number("#QD-1234"), Some(1234));
        assert_eq!(ticket_number("QD1234"), Some(1234));
        assert_eq!(ticket_number("1234x"), None);
        assert_eq!(ticket_number("#"), None);
        assert_eq!(ticket_number("[#QD-77]"), Some(77));
        for not_a_number in ["-5", "+5", "1.5", "1,234", "2024-01", "QD-1-2"] {
            assert_eq!(ticket_number(not_a_number), None, "{not_a_number}");
        }
    }
}
