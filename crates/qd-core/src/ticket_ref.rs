/// How a ticket number appears in a subject line, e.g. `[#QD-{n}]` renders ticket 1234 as
/// `[#QD-1234]`. Finding the reference in a reply's subject is the strongest threading
/// signal: it survives mail clients that drop In-Reply-To and References.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketRefFormat {
    prefix: String,
    suffix: String,
}

/// A ticket reference format that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketRefError {
    #[error("ticket reference format `{0}` must contain `{{n}}` exactly once")]
    Placeholder(String),
    #[error("ticket reference format `{0}` needs a non-empty prefix before `{{n}}`")]
    EmptyPrefix(String),
    #[error("ticket reference format `{0}` must not end its prefix in a digit")]
    DigitPrefix(String),
}

impl TicketRefFormat {
    pub fn new(format: &str) -> Result<Self, TicketRefError> {
        let mut parts = format.split("{n}");
        let (Some(prefix), Some(suffix), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(TicketRefError::Placeholder(format.to_string()));
        };
        if prefix.is_empty() {
            return Err(TicketRefError::EmptyPrefix(format.to_string()));
        }
        if prefix.ends_with(|c: char| c.is_ascii_digit()) {
            return Err(TicketRefError::DigitPrefix(format.to_string()));
        }
        Ok(Self {
            prefix: prefix.to_string(),
            suffix: suffix.to_string(),
        })
    }

    pub fn render(&self, number: i64) -> String {
        format!("{}{}{}", self.prefix, number, self.suffix)
    }

    /// The first ticket number referenced in `subject`, if any. The prefix matches
    /// case-insensitively (some clients upper-case subjects).
    pub fn find(&self, subject: &str) -> Option<i64> {
        let hay = subject.to_lowercase();
        let prefix = self.prefix.to_lowercase();
        let suffix = self.suffix.to_lowercase();
        let mut from = 0;
        while let Some(pos) = hay[from..].find(&prefix) {
            let start = from + pos + prefix.len();
            let digits: &str = {
                let rest = &hay[start..];
                let end = rest
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(rest.len());
                &rest[..end]
            };
            if !digits.is_empty() && hay[start + digits.len()..].starts_with(&suffix) {
                if let Ok(n) = digits.parse::<i64>() {
                    return Some(n);
                }
            }
            from = start;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_finds_a_reference() {
        let f = TicketRefFormat::new("[#QD-{n}]").unwrap();
        assert_eq!(f.render(1234), "[#QD-1234]");
        assert_eq!(f.find("Re: Re: my server [#QD-1234] is down"), Some(1234));
        assert_eq!(f.find("RE: [#qd-77]"), Some(77));
    }

    #[test]
    fn ignores_near_misses() {
        let f = TicketRefFormat::new("[#QD-{n}]").unwrap();
        assert_eq!(f.find("[#QD-] and [#QD-12 and QD-13]"), None);
        assert_eq!(f.find("[#QD-x1] then [#QD-9]"), Some(9));
    }

    #[test]
    fn rejects_formats_that_cannot_be_found_again() {
        assert!(TicketRefFormat::new("QD").is_err());
        assert!(TicketRefFormat::new("{n}").is_err());
        assert!(TicketRefFormat::new("#{n}{n}").is_err());
        assert!(TicketRefFormat::new("Q1{n}").is_err());
    }
}
