use std::fmt;
use std::str::FromStr;

/// A string that names no variant of one of our enums.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{value}` (expected one of: {expected})")]
pub struct ParseEnumError {
    pub kind: &'static str,
    pub value: String,
    pub expected: &'static str,
}

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident, $kind:literal, { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = ParseEnumError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s.trim().to_ascii_lowercase().as_str() {
                    $($text => Ok($name::$variant),)+
                    _ => Err(ParseEnumError {
                        kind: $kind,
                        value: s.to_string(),
                        expected: concat!($($text, " "),+),
                    }),
                }
            }
        }
    };
}

string_enum!(
    /// Where a customer stands with us; retention follows from it.
    CustomerStatus, "customer status", {
        /// Asked or bought nothing yet.
        Prospect => "prospect",
        /// Has a running contract.
        Active => "active",
        /// Stopped being a customer; the retention clock runs from that date.
        Former => "former",
    }
);

string_enum!(
    /// Where a ticket stands in the staff workflow.
    TicketStatus, "ticket status", {
        Open => "open",
        /// Waiting on the customer.
        Pending => "pending",
        Closed => "closed",
    }
);

string_enum!(
    /// Which way a message went.
    Direction, "message direction", {
        /// From a customer or contact to us.
        In => "in",
        /// From us (a staff reply or an acknowledgement).
        Out => "out",
        /// Internal staff note; never sent.
        Note => "note",
    }
);

string_enum!(
    /// The true class of a message as staff say it ("mark as spam / not spam"), which
    /// the filter learns from.
    Label, "label", {
        Ham => "ham",
        Spam => "spam",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_round_trips_through_text() {
        for s in CustomerStatus::ALL {
            assert_eq!(s.as_str().parse::<CustomerStatus>(), Ok(*s));
        }
        for s in TicketStatus::ALL {
            assert_eq!(s.to_string().parse::<TicketStatus>(), Ok(*s));
        }
        for d in Direction::ALL {
            assert_eq!(d.as_str().parse::<Direction>(), Ok(*d));
        }
    }

    #[test]
    fn unknown_text_names_the_choices() {
        let err = "gone".parse::<CustomerStatus>().unwrap_err();
        assert!(err.to_string().contains("prospect active former"), "{err}");
    }
}
