//! Virus signatures: ClamAV-format hash signatures (`.hdb` MD5, `.hsb` SHA-256), a
//! body-pattern subset of `.ndb`, the EICAR test file built in, and an optional clamd.
//!
//! Hash signatures match the per-part digests of the [`MessageView`], so they need no
//! bytes at all. Patterns and clamd need attachment bytes: this module holds the only
//! implementations of [`AttachmentScanner`] in qd-filter (a test holds that), and they
//! return signature names, never content.
//!
//! `.ndb` subset: `Name:TargetType:Offset:HexSig`, where Offset is `*` or a decimal
//! byte offset and HexSig is hex with `??` wildcards; the target type is not checked
//! (every attachment is scanned). Lines using other ClamAV pattern syntax are skipped
//! and counted in [`LoadReport::skipped`].

pub mod clamd;

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;

use qd_mail::view::{AttachmentScanner, PartInfo};
use qd_mail::MessageView;

use crate::util::Hits;
use crate::FilterError;

pub use clamd::{ClamdClient, ClamdError};

/// The EICAR test file, assembled from two halves so that no source file or compiled
/// constant holds the whole string (scanners flag files that do).
pub fn eicar() -> Vec<u8> {
    let head: &[u8] = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR";
    let tail: &[u8] = b"-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
    [head, tail].concat()
}

const EICAR_NAME: &str = "Eicar-Test-Signature";

#[derive(Debug, Clone)]
struct Pattern {
    name: String,
    /// `None`: anywhere; `Some(n)`: at byte n.
    offset: Option<usize>,
    /// `None` is a `??` wildcard.
    bytes: Vec<Option<u8>>,
    /// The longest literal run, for a fast memmem search, and where it sits.
    anchor: Vec<u8>,
    anchor_at: usize,
}

impl Pattern {
    fn new(name: String, offset: Option<usize>, bytes: Vec<Option<u8>>) -> Option<Pattern> {
        let (mut best, mut best_at, mut start) = (0usize, 0usize, 0usize);
        for (i, b) in bytes.iter().enumerate() {
            if b.is_none() {
                start = i + 1;
            } else if i + 1 - start > best {
                best = i + 1 - start;
                best_at = start;
            }
        }
        if best == 0 {
            return None;
        }
        let anchor = bytes
            .get(best_at..best_at + best)?
            .iter()
            .map(|b| b.unwrap_or_default())
            .collect();
        Some(Pattern {
            name,
            offset,
            bytes,
            anchor,
            anchor_at: best_at,
        })
    }

    fn matches_at(&self, data: &[u8], at: usize) -> bool {
        let Some(window) = data.get(at..at + self.bytes.len()) else {
            return false;
        };
        window
            .iter()
            .zip(&self.bytes)
            .all(|(d, p)| p.is_none_or(|p| p == *d))
    }

    fn find(&self, data: &[u8]) -> bool {
        if let Some(at) = self.offset {
            return self.matches_at(data, at);
        }
        // Every occurrence of the anchor, overlapping ones included (`find_iter` steps
        // over a whole anchor after each hit, so a failed candidate could hide a real
        // match that overlaps it).
        let finder = memchr::memmem::Finder::new(&self.anchor);
        let mut from = 0;
        while let Some(found) = data.get(from..).and_then(|rest| finder.find(rest)) {
            let pos = from + found;
            if pos
                .checked_sub(self.anchor_at)
                .is_some_and(|start| self.matches_at(data, start))
            {
                return true;
            }
            from = pos + 1;
        }
        false
    }
}

/// How many signatures a directory gave.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct LoadReport {
    pub md5: usize,
    pub sha256: usize,
    pub patterns: usize,
    /// Lines not understood (other pattern syntax, SHA-1 hashes, junk).
    pub skipped: usize,
}

/// Loaded signatures. Keys are lowercase hex digests; a size of `None` matches any size.
#[derive(Debug, Clone, Default)]
pub struct SignatureDb {
    md5: HashMap<String, Vec<(Option<u64>, String)>>,
    sha256: HashMap<String, Vec<(Option<u64>, String)>>,
    patterns: Vec<Pattern>,
    report: LoadReport,
}

impl SignatureDb {
    /// The built-in set: EICAR only.
    pub fn builtin() -> SignatureDb {
        let mut db = SignatureDb::default();
        let e = eicar();
        for variant in [
            e.clone(),
            [&e[..], b"\n"].concat(),
            [&e[..], b"\r\n"].concat(),
        ] {
            db.add_hash(
                &hex::encode(<md5::Md5 as sha2::Digest>::digest(&variant)),
                Some(variant.len() as u64),
                EICAR_NAME,
            );
            db.add_hash(
                &hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&variant)),
                Some(variant.len() as u64),
                EICAR_NAME,
            );
        }
        if let Some(p) = Pattern::new(
            EICAR_NAME.to_owned(),
            None,
            e.into_iter().map(Some).collect(),
        ) {
            db.patterns.push(p);
        }
        db
    }

    /// The built-in set plus every `*.hdb`, `*.hsb` and `*.ndb` file in `dir`.
    pub fn load_dir(dir: &Path) -> Result<SignatureDb, FilterError> {
        let mut db = SignatureDb::builtin();
        let entries = std::fs::read_dir(dir).map_err(|source| FilterError::Signatures {
            path: dir.to_owned(),
            source,
        })?;
        let mut files: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
        files.sort();
        for path in files {
            let ext = path
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or_default()
                .to_ascii_lowercase();
            if !matches!(ext.as_str(), "hdb" | "hsb" | "ndb") {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(|source| FilterError::Signatures {
                path: path.clone(),
                source,
            })?;
            let text = String::from_utf8_lossy(&bytes);
            for line in text.lines() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let ok = match ext.as_str() {
                    "ndb" => db.add_ndb(line),
                    _ => db.add_hash_line(line),
                };
                if !ok {
                    db.report.skipped += 1;
                }
            }
        }
        Ok(db)
    }

    pub fn report(&self) -> LoadReport {
        self.report
    }

    fn add_hash(&mut self, hex: &str, size: Option<u64>, name: &str) {
        let entry = (size, name.to_owned());
        match hex.len() {
            32 => {
                self.report.md5 += 1;
                self.md5.entry(hex.to_owned()).or_default().push(entry);
            }
            64 => {
                self.report.sha256 += 1;
                self.sha256.entry(hex.to_owned()).or_default().push(entry);
            }
            _ => {}
        }
    }

    /// `HASH:SIZE:NAME[:FLEVEL]`, SIZE a number or `*`.
    fn add_hash_line(&mut self, line: &str) -> bool {
        let mut f = line.split(':');
        let (Some(hash), Some(size), Some(name)) = (f.next(), f.next(), f.next()) else {
            return false;
        };
        let hash = hash.trim().to_ascii_lowercase();
        if !matches!(hash.len(), 32 | 64) || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return false;
        }
        let size = match size.trim() {
            "*" => None,
            s => match s.parse() {
                Ok(n) => Some(n),
                Err(_) => return false,
            },
        };
        if name.trim().is_empty() {
            return false;
        }
        self.add_hash(&hash, size, name.trim());
        true
    }

    /// `NAME:TARGET:OFFSET:HEX[:MINFL[:MAXFL]]`.
    fn add_ndb(&mut self, line: &str) -> bool {
        let f: Vec<&str> = line.split(':').collect();
        let (Some(name), Some(target), Some(offset), Some(hexsig)) =
            (f.first(), f.get(1), f.get(2), f.get(3))
        else {
            return false;
        };
        if target.trim().parse::<u8>().is_err() {
            return false;
        }
        let offset = match offset.trim() {
            "*" => None,
            s => match s.parse() {
                Ok(n) => Some(n),
                Err(_) => return false,
            },
        };
        let hexsig = hexsig.trim();
        if hexsig.len() % 2 != 0 || hexsig.is_empty() {
            return false;
        }
        let mut bytes = Vec::with_capacity(hexsig.len() / 2);
        for pair in hexsig.as_bytes().chunks(2) {
            if pair == b"??" {
                bytes.push(None);
                continue;
            }
            let Ok(s) = std::str::from_utf8(pair) else {
                return false;
            };
            match u8::from_str_radix(s, 16) {
                Ok(b) => bytes.push(Some(b)),
                Err(_) => return false,
            }
        }
        match Pattern::new(name.trim().to_owned(), offset, bytes) {
            Some(p) => {
                self.patterns.push(p);
                self.report.patterns += 1;
                true
            }
            None => false,
        }
    }

    /// Hash matches over the view's digests (no bytes needed).
    /// (signature name, part index) of every hash match.
    fn hash_matches(&self, view: &MessageView) -> Vec<(String, usize)> {
        let mut found = Vec::new();
        for (index, part) in view.parts().iter().enumerate() {
            let sized = |list: Option<&Vec<(Option<u64>, String)>>| {
                list.into_iter()
                    .flatten()
                    .filter(|(size, _)| size.is_none_or(|s| s == part.decoded_size))
                    .map(|(_, n)| (n.clone(), index))
                    .collect::<Vec<_>>()
            };
            if let Some(md5) = &part.md5 {
                found.extend(sized(self.md5.get(md5)));
            }
            if let Some(sha) = &part.sha256 {
                found.extend(sized(self.sha256.get(sha)));
            }
        }
        found
    }
}

/// Pattern signatures over attachment bytes.
struct PatternScan<'a> {
    db: &'a SignatureDb,
}

impl AttachmentScanner for PatternScan<'_> {
    fn scan(&self, _part: &PartInfo, bytes: &[u8]) -> Vec<String> {
        self.db
            .patterns
            .iter()
            .filter(|p| p.find(bytes))
            .map(|p| p.name.clone())
            .collect()
    }
}

/// What the signature family found.
#[derive(Debug, Default)]
pub(crate) struct SignatureOutcome {
    pub(crate) viruses: Vec<String>,
    /// SHA-256 digests of the parts a signature matched.
    pub(crate) infected: Vec<String>,
    /// Attachments clamd should have scanned were not (clamd unreachable, or refusing
    /// one as too large): the unreachable policy decides.
    pub(crate) clamd_unscanned: bool,
}

pub(crate) fn check(
    view: &MessageView,
    db: &SignatureDb,
    clamd: Option<&ClamdClient>,
    hits: &mut Hits,
) -> SignatureOutcome {
    let mut out = SignatureOutcome::default();
    let digest = |part: usize| view.parts().get(part).and_then(|p| p.sha256.clone());
    let mut names = Vec::new();
    for (name, part) in db.hash_matches(view) {
        names.push(name);
        out.infected.extend(digest(part));
    }
    if !view.attachments().is_empty() {
        for hit in view.scan_with(&PatternScan { db }) {
            out.infected.extend(digest(hit.part));
            names.push(hit.name);
        }
        if let Some(client) = clamd {
            let scan = ClamdScan {
                client,
                error: RefCell::new(None),
                too_large: std::cell::Cell::new(0),
            };
            let found = view.scan_with(&scan);
            if let Some(err) = scan.error.into_inner() {
                tracing::warn!(error = %err, "clamd scan failed");
                out.clamd_unscanned = true;
                hits.add("CLAMD_UNREACHABLE", "attachments were not scanned by clamd");
            }
            // Not an outage, but the attachment went unscanned all the same: the
            // unreachable policy applies, under a tag that says what happened.
            let too_large = scan.too_large.get();
            if too_large > 0 {
                tracing::warn!(
                    attachments = too_large,
                    "clamd refused attachments as too large"
                );
                out.clamd_unscanned = true;
                hits.add(
                    "CLAMD_SIZE_LIMIT",
                    format!(
                        "{too_large} attachment(s) larger than clamd's StreamMaxLength were not scanned by clamd"
                    ),
                );
            }
            for hit in found {
                hits.add("VIRUS_CLAMD", hit.name.clone());
                out.infected.extend(digest(hit.part));
                out.viruses.push(hit.name);
            }
        }
    }
    out.infected.sort();
    out.infected.dedup();
    names.sort();
    names.dedup();
    if !names.is_empty() {
        hits.add("VIRUS_SIGNATURE", names.join(", "));
        out.viruses.extend(names);
    }
    out
}

use clamd::ClamdScan;

#[cfg(test)]
mod pattern_tests {
    use super::*;

    /// `00000000??4D5A` in `00 00 00 00 00 00 01 4D 5A`: the anchor's first hit at 0 fails
    /// (byte 6 is not 4D), the real match starts at 2 and overlaps it.
    #[test]
    fn an_overlapping_anchor_hit_is_not_skipped() {
        let bytes = vec![
            Some(0),
            Some(0),
            Some(0),
            Some(0),
            None,
            Some(0x4D),
            Some(0x5A),
        ];
        let p = Pattern::new("T".into(), None, bytes).unwrap();
        assert!(p.find(&[0, 0, 0, 0, 0, 0, 1, 0x4D, 0x5A]));
        assert!(!p.find(&[0, 0, 0, 0, 0, 0, 1, 0x4D, 0x5B]));
    }
}
