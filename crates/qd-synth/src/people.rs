//! Customers and other senders.
//!
//! Customer `i` is a pure function of the seed and `i` (its own ChaCha stream), so the
//! generator can look up whoever writes without holding the customer list in memory, and
//! [`crate::customers`] returns the same people the messages come from.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::encode::ascii_fold;

pub struct Locale {
    pub firsts: &'static [&'static str],
    pub lasts: &'static [&'static str],
    pub greetings: &'static [&'static str],
    pub closings: &'static [&'static str],
    /// Sentences in the customer's language, where the accents of QP bodies come from.
    pub lines: &'static [&'static str],
    /// "On DATE, NAME wrote:" in the customer's language; `{d}` and `{n}` are replaced.
    pub attribution: &'static str,
    pub subjects: &'static [&'static str],
    /// UTC offsets in minutes.
    pub offsets: &'static [i32],
    /// Share of customers, in percent.
    pub weight: u32,
}

pub const LOCALES: &[Locale] = &[
    Locale {
        firsts: &[
            "James", "Mary", "John", "Patricia", "Robert", "Jennifer", "Michael", "Linda", "David",
            "Sarah", "Emily", "Daniel", "Olivia", "Thomas", "Emma", "Chris", "Laura", "Kevin",
            "Rachel", "Sean", "Zoë", "Renée", "Siobhán", "Aoife", "Priya", "Raj",
        ],
        lasts: &[
            "Smith", "Johnson", "Brown", "Taylor", "Wilson", "Davies", "Evans", "Walker", "Wright",
            "O'Brien", "Murphy", "Clarke", "Hughes", "Green", "Hall", "Patel", "Khan", "Robinson",
            "Thompson", "White",
        ],
        greetings: &[
            "Hi,",
            "Hello,",
            "Hi there,",
            "Dear support team,",
            "Hello support,",
            "Good morning,",
        ],
        closings: &[
            "Thanks,",
            "Thanks in advance,",
            "Best regards,",
            "Kind regards,",
            "Cheers,",
            "Many thanks,",
        ],
        lines: &["Thanks for the quick help — much appreciated."],
        attribution: "On {d}, {n} wrote:",
        subjects: &[],
        offsets: &[0, 60, -300, -480, 600, 330],
        weight: 35,
    },
    Locale {
        firsts: &[
            "Jan", "Pieter", "Sanne", "Anouk", "Daan", "Lotte", "Bram", "Fleur", "Joëlle", "Sem",
            "Noortje", "Ruud", "Maaike", "Thijs", "Eline", "Chloë",
        ],
        lasts: &[
            "de Vries",
            "Jansen",
            "van den Berg",
            "Bakker",
            "Visser",
            "Smit",
            "Meijer",
            "de Boer",
            "Mulder",
            "de Groot",
            "Bos",
            "Vos",
            "Peters",
            "Hendriks",
            "van Dijk",
        ],
        greetings: &["Beste support,", "Hallo,", "Goedemorgen,", "Beste,"],
        closings: &[
            "Met vriendelijke groet,",
            "Groeten,",
            "Alvast bedankt,",
            "Mvg,",
        ],
        lines: &[
            "Alvast bedankt voor de snelle reactie.",
            "Zou u hier even naar kunnen kijken? Het is vrij urgent.",
            "De financiële afhandeling loopt via onze boekhouder, die staat in de cc.",
            "Sinds de migratie werkt het contactformulier niet meer, ook niet na één herstart.",
        ],
        attribution: "Op {d} schreef {n}:",
        subjects: &[
            "Storing: website {domain} niet bereikbaar",
            "Vraag over factuur {invoice}",
            "E-mail komt niet aan op {mailbox}",
            "Verhuizing van {domain} naar een ander pakket",
        ],
        offsets: &[60, 120],
        weight: 25,
    },
    Locale {
        firsts: &[
            "Jürgen",
            "Lukas",
            "Anna",
            "Lena",
            "Jörg",
            "Sören",
            "Björn",
            "Jens",
            "Katrin",
            "Günther",
            "Lea",
            "Maximilian",
            "Sophie",
            "Felix",
            "Mia",
        ],
        lasts: &[
            "Müller",
            "Schmidt",
            "Schneider",
            "Fischer",
            "Weber",
            "Meyer",
            "Wagner",
            "Becker",
            "Schäfer",
            "Koch",
            "Bauer",
            "Krüger",
            "Hoffmann",
            "Schröder",
            "Weiß",
        ],
        greetings: &[
            "Hallo,",
            "Sehr geehrte Damen und Herren,",
            "Guten Tag,",
            "Hallo Support-Team,",
        ],
        closings: &[
            "Mit freundlichen Grüßen,",
            "Viele Grüße,",
            "Beste Grüße,",
            "Danke und Gruß,",
        ],
        lines: &[
            "Vielen Dank für Ihre schnelle Hilfe.",
            "Das Problem besteht leider weiterhin, bitte prüfen Sie das dringend.",
            "Können Sie mir kurz Bescheid geben, wann die Störung behoben ist?",
            "Die Überweisung ist gestern rausgegangen, bitte um kurze Bestätigung.",
        ],
        attribution: "Am {d} schrieb {n}:",
        subjects: &[
            "Störung: {domain} nicht erreichbar",
            "Rechnung {invoice}: Frage zur Abbuchung",
            "Zertifikat für {domain} abgelaufen",
            "Kündigung zum Monatsende",
        ],
        offsets: &[60, 120],
        weight: 15,
    },
    Locale {
        firsts: &[
            "François",
            "Hélène",
            "Céline",
            "Jérôme",
            "Amélie",
            "Benoît",
            "Chloé",
            "Léa",
            "Théo",
            "Zoé",
            "Marc",
            "Julien",
            "Camille",
            "Élodie",
            "Loïc",
        ],
        lasts: &[
            "Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand",
            "Leroy", "Moreau", "Lefèvre", "Girard", "Rousseau", "Fournier", "Mercier",
        ],
        greetings: &["Bonjour,", "Madame, Monsieur,", "Bonjour à toute l'équipe,"],
        closings: &[
            "Cordialement,",
            "Bien à vous,",
            "Merci d'avance,",
            "Bonne journée,",
        ],
        lines: &[
            "Merci d'avance pour votre aide, je reste à votre disposition.",
            "Le problème est réapparu ce matin, pouvez-vous vérifier ?",
            "Je vous remercie de votre réponse rapide.",
        ],
        attribution: "Le {d}, {n} a écrit :",
        subjects: &[
            "Problème de certificat SSL sur {domain}",
            "Question sur la facture {invoice}",
            "Site {domain} très lent depuis hier",
        ],
        offsets: &[60, 120],
        weight: 10,
    },
    Locale {
        firsts: &[
            "José", "María", "Jesús", "Lucía", "Andrés", "Sofía", "Álvaro", "Inés", "Raúl",
            "Martín",
        ],
        lasts: &[
            "García",
            "Fernández",
            "González",
            "Rodríguez",
            "López",
            "Martínez",
            "Sánchez",
            "Pérez",
            "Gómez",
            "Jiménez",
        ],
        greetings: &["Hola,", "Buenos días,", "Estimado equipo,"],
        closings: &["Saludos,", "Un saludo,", "Muchas gracias,", "Atentamente,"],
        lines: &[
            "Muchas gracias por su ayuda, el problema continúa.",
            "¿Podrían revisarlo lo antes posible?",
        ],
        attribution: "El {d}, {n} escribió:",
        subjects: &[
            "Problema con el correo de {domain}",
            "Duda sobre la factura {invoice}",
        ],
        offsets: &[60, 120, -300],
        weight: 5,
    },
    Locale {
        firsts: &[
            "Łukasz",
            "Małgorzata",
            "Paweł",
            "Wojciech",
            "Agnieszka",
            "Michał",
            "Zofia",
            "Krzysztof",
            "Joanna",
            "Bartłomiej",
        ],
        lasts: &[
            "Nowak",
            "Kowalski",
            "Wiśniewski",
            "Wójcik",
            "Kowalczyk",
            "Kamiński",
            "Lewandowski",
            "Zieliński",
            "Szymański",
            "Woźniak",
        ],
        greetings: &["Dzień dobry,", "Witam,"],
        closings: &["Pozdrawiam,", "Z poważaniem,", "Dziękuję,"],
        lines: &[
            "Dziękuję za pomoc, problem nadal występuje.",
            "Proszę o pilną odpowiedź.",
        ],
        attribution: "{d}, {n} napisał(a):",
        subjects: &["Błąd bazy danych na {domain}"],
        offsets: &[60, 120],
        weight: 5,
    },
    Locale {
        firsts: &[
            "Åsa", "Søren", "Björn", "Märta", "Øystein", "Sigrún", "Ingrid", "Lars", "Nils",
            "Freja",
        ],
        lasts: &[
            "Andersson",
            "Johansson",
            "Nielsen",
            "Hansen",
            "Ødegård",
            "Lindqvist",
            "Åberg",
            "Sørensen",
            "Berg",
            "Karlsson",
        ],
        greetings: &["Hej,", "Hei,", "Hello,"],
        closings: &[
            "Med vänlig hälsning,",
            "Mvh,",
            "Venlig hilsen,",
            "Best regards,",
        ],
        lines: &[
            "Tack för hjälpen, problemet kvarstår tyvärr.",
            "Tusind tak for hjælpen.",
        ],
        attribution: "{d} skrev {n}:",
        subjects: &[],
        offsets: &[60, 120],
        weight: 5,
    },
];

/// Company kinds: (domain slug, display word).
const INDUSTRIES: &[(&str, &str)] = &[
    ("webdesign", "Webdesign"),
    ("bakery", "Bakery"),
    ("consulting", "Consulting"),
    ("shop", "Shop"),
    ("media", "Media"),
    ("travel", "Travel"),
    ("fotografie", "Fotografie"),
    ("bouw", "Bouw"),
    ("dental", "Dental"),
    ("law", "Law"),
    ("it", "IT"),
    ("garden", "Garden"),
    ("fitness", "Fitness"),
    ("coffee", "Coffee"),
    ("bikes", "Bikes"),
    ("events", "Events"),
    ("print", "Print"),
    ("music", "Music"),
    ("wines", "Wines"),
    ("auto", "Auto"),
    ("pets", "Pets"),
    ("yoga", "Yoga"),
    ("cleaning", "Cleaning"),
    ("tech", "Tech"),
    ("software", "Software"),
    ("studio", "Studio"),
    ("architects", "Architects"),
    ("immobilien", "Immobilien"),
    ("hotel", "Hotel"),
    ("restaurant", "Restaurant"),
    ("catering", "Catering"),
    ("flowers", "Flowers"),
    ("books", "Books"),
    ("fashion", "Fashion"),
    ("games", "Games"),
    ("energy", "Energy"),
    ("logistics", "Logistics"),
    ("school", "School"),
    ("cafe", "Café"),
    ("reisebuero", "Reisebüro"),
];

const FREEMAIL: &[&str] = &["freemail.example", "post.example", "webpost.example"];
const ROLES: &[&str] = &["info", "billing", "admin", "office", "contact"];
const STATUSES: &[(&str, u32)] = &[("active", 75), ("prospect", 15), ("former", 10)];

/// Everything the generator needs to know about one customer.
pub struct Person {
    pub name: String,
    /// One or two addresses, the first one primary.
    pub emails: Vec<String>,
    pub status: &'static str,
    pub locale: &'static Locale,
    pub offset: i32,
    pub company: String,
    /// The customer's website, hosted by us: the subject of most complaints.
    pub site: String,
    pub phone: String,
}

/// Derives per-customer randomness from the seed, independent of the message stream.
pub fn customer_key(seed: u64) -> [u8; 32] {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(b"customer");
    key
}

pub fn pick<T: Copy, R: Rng>(rng: &mut R, items: &[T]) -> T {
    items[rng.gen_range(0..items.len())]
}

pub fn pick_locale<R: Rng>(rng: &mut R) -> &'static Locale {
    let total: u32 = LOCALES.iter().map(|l| l.weight).sum();
    let mut x = rng.gen_range(0..total);
    for l in LOCALES {
        if x < l.weight {
            return l;
        }
        x -= l.weight;
    }
    &LOCALES[0]
}

/// A bijection of `0..n`, so that company domains, which are derived from the permuted
/// index, are unique without a lookup table yet neighbours do not look alike.
fn permute(i: u32, n: u32) -> u64 {
    const PRIMES: [u64; 4] = [1_000_003, 15_485_863, 32_452_843, 49_979_687];
    let n = u64::from(n.max(1));
    // A prime that does not divide n is coprime to it, hence i -> a*i + b is a bijection.
    let a = PRIMES.iter().copied().find(|p| n % p != 0).unwrap_or(1);
    (a * u64::from(i) + 7_919) % n
}

pub fn customer_at(key: &[u8; 32], i: u32, n: u32) -> Person {
    let mut rng = ChaCha8Rng::from_seed(*key);
    rng.set_stream(u64::from(i));
    let j = permute(i, n);

    // The company's name and domain come from the permuted index alone: unique.
    let all_lasts: usize = LOCALES.iter().map(|l| l.lasts.len()).sum();
    let (ni, nl) = (INDUSTRIES.len() as u64, all_lasts as u64);
    let industry = INDUSTRIES[(j % ni) as usize];
    let q = j / ni;
    // Shifting the name by the industry keeps the map invertible (q mod nl is recovered
    // from the name, q / nl is `round`) while a small customer set still gets varied names.
    let mut last_idx = ((q + (j % ni) * 37) % nl) as usize;
    let round = q / nl;
    let mut company_locale = &LOCALES[0];
    for l in LOCALES {
        if last_idx < l.lasts.len() {
            company_locale = l;
            break;
        }
        last_idx -= l.lasts.len();
    }
    let company_last = company_locale.lasts[last_idx];
    let mut site = String::with_capacity(40);
    for (k, part) in company_last.split(' ').enumerate() {
        if k > 0 {
            site.push('-');
        }
        ascii_fold(&mut site, part);
    }
    site.push('-');
    site.push_str(industry.0);
    if round > 0 {
        site.push_str(&(round + 1).to_string());
    }
    site.push_str(".example");
    let company = if rng.gen_bool(0.5) {
        format!("{company_last} {}", industry.1)
    } else {
        format!("{} {company_last}", industry.1)
    };

    let locale = if rng.gen_bool(0.85) {
        company_locale
    } else {
        pick_locale(&mut rng)
    };
    let first = pick(&mut rng, locale.firsts);
    let last = if rng.gen_bool(0.4) {
        company_last
    } else {
        pick(&mut rng, locale.lasts)
    };
    let name = format!("{first} {last}");
    let (mut f, mut l) = (String::new(), String::new());
    ascii_fold(&mut f, first);
    for part in last.split(' ') {
        ascii_fold(&mut l, part);
    }

    let mut emails = Vec::with_capacity(2);
    if rng.gen_bool(0.3) {
        // The permuted index keeps free-mail addresses unique, and people do have numbers.
        emails.push(format!("{f}.{l}{j}@{}", pick(&mut rng, FREEMAIL)));
        if rng.gen_bool(0.4) {
            emails.push(format!("info@{site}"));
        }
    } else {
        let local = match rng.gen_range(0..3) {
            0 => f.clone(),
            1 => format!("{f}.{l}"),
            _ => format!("{}{l}", &f[..f.len().min(1)]),
        };
        emails.push(format!("{local}@{site}"));
        if rng.gen_bool(0.4) {
            emails.push(format!("{}@{site}", pick(&mut rng, ROLES)));
        }
    }

    let mut x = rng.gen_range(0..100);
    let mut status = STATUSES[0].0;
    for &(s, w) in STATUSES {
        if x < w {
            status = s;
            break;
        }
        x -= w;
    }
    let offset = pick(&mut rng, locale.offsets);
    // 555 numbers are reserved for fiction.
    let phone = format!(
        "+1 555 01{:02} {:03}",
        rng.gen_range(0..100),
        rng.gen_range(0..1000)
    );
    Person {
        name,
        emails,
        status,
        locale,
        offset,
        company,
        site,
        phone,
    }
}

/// A sender who is not a customer: a prospect, a vendor, a spammer.
pub struct Stranger {
    pub name: Option<String>,
    pub email: String,
    pub locale: &'static Locale,
    pub offset: i32,
    pub domain: String,
}

const STRANGER_WORDS: &[&str] = &[
    "bright", "blue", "growth", "digital", "rank", "pixel", "cloud", "smart", "lead", "media",
    "web", "boost", "net", "star", "alpha", "nova", "prime", "north", "peak", "swift",
];
const STRANGER_ROLES: &[&str] = &[
    "sales",
    "info",
    "marketing",
    "hello",
    "partnerships",
    "seo",
    "jobs",
];

pub fn stranger<R: Rng>(rng: &mut R) -> Stranger {
    let locale = pick_locale(rng);
    let domain = format!(
        "{}{}.test",
        pick(rng, STRANGER_WORDS),
        pick(rng, STRANGER_WORDS)
    );
    let first = pick(rng, locale.firsts);
    let last = pick(rng, locale.lasts);
    let (name, email) = if rng.gen_bool(0.35) {
        (None, format!("{}@{domain}", pick(rng, STRANGER_ROLES)))
    } else {
        let mut local = String::new();
        ascii_fold(&mut local, first);
        local.push('.');
        for part in last.split(' ') {
            ascii_fold(&mut local, part);
        }
        (Some(format!("{first} {last}")), format!("{local}@{domain}"))
    };
    let offset = pick(rng, locale.offsets);
    Stranger {
        name,
        email,
        locale,
        offset,
        domain,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permute_is_a_bijection() {
        for n in [1, 2, 3, 40, 1_000_003, 1_000] {
            let n_small = n.min(5000);
            let mut seen = std::collections::HashSet::new();
            for i in 0..n_small {
                let j = permute(i, n);
                assert!(j < u64::from(n));
                assert!(seen.insert(j));
            }
        }
    }

    #[test]
    fn addresses_are_ascii_and_unique() {
        let key = customer_key(7);
        let n = 20_000;
        let mut seen = std::collections::HashSet::new();
        for i in 0..n {
            let p = customer_at(&key, i, n);
            assert!(!p.emails.is_empty() && p.emails.len() <= 2);
            for e in p.emails {
                assert!(e.is_ascii() && e.contains('@') && !e.contains(' '), "{e}");
                assert!(seen.insert(e.clone()), "duplicate {e}");
            }
        }
    }
}
