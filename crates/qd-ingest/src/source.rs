//! File sources for `quietdesk import`: a Maildir, an mbox file, a single message, or a
//! directory of message files searched recursively whatever their names.
//!
//! Every source yields items in a stable order with a position that orders after every
//! earlier item, so an import can resume after the last committed position: directory
//! items are ordered by relative path, mbox items by byte offset.

use std::cmp::Ordering;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use qd_mail::mbox::MboxReader;

/// One message-to-be read from a source.
#[derive(Debug)]
pub struct SourceItem {
    /// Where it came from, for checkpoints and error reports: a relative path, or
    /// `@offset` in an mbox.
    pub position: Position,
    pub raw: Result<Vec<u8>, ItemError>,
}

/// Why one item could not be taken; the import goes on with the next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ItemError {
    #[error(
        "message of {size} bytes exceeds the limit of {limit} bytes (ingest.max_message_bytes)"
    )]
    TooLarge { size: u64, limit: u64 },
    #[error("cannot read: {0}")]
    Read(String),
    #[error("this file is an mbox holding several messages; import it on its own (`quietdesk import FILE`) so each message is stored")]
    MboxInDirectory,
}

/// A UTF-8 byte-order mark: an artefact of the editor that saved a file, not mail.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Whether a file read whole holds an mbox of more than one message: an envelope line
/// first, and after an empty line another envelope line followed by a header field. A
/// paragraph of a single message that starts with "From " (unquoted by the tool that
/// saved it) is not followed by a header field.
pub fn is_multi_message_mbox(raw: &[u8]) -> bool {
    let (rest, had_envelope) = qd_mail::strip_mbox_envelope(raw);
    had_envelope
        && memchr::memmem::find_iter(rest, b"\nFrom ").any(|at| {
            let before = &rest[..at];
            let after_blank_line = before.ends_with(b"\n") || before.ends_with(b"\n\r");
            after_blank_line && qd_mail::looks_like_mail(&rest[at + 1..])
        })
}

/// A position in a source; ordered so that resuming skips what was committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    Path(String),
    Offset(u64),
}

impl Position {
    pub fn encode(&self) -> String {
        match self {
            Position::Path(p) => format!("path:{p}"),
            Position::Offset(o) => format!("offset:{o}"),
        }
    }

    pub fn decode(text: &str) -> Option<Position> {
        if let Some(p) = text.strip_prefix("path:") {
            Some(Position::Path(p.to_string()))
        } else {
            text.strip_prefix("offset:")
                .and_then(|o| o.parse().ok())
                .map(Position::Offset)
        }
    }
}

impl PartialOrd for Position {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match (self, other) {
            (Position::Path(a), Position::Path(b)) => Some(a.cmp(b)),
            (Position::Offset(a), Position::Offset(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }
}

/// What kind of thing a path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    Maildir,
    Mbox,
    SingleMessage,
    Directory,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{0} is neither a file nor a directory")]
    NotFileOrDir(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SourceError + '_ {
    move |source| SourceError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub fn detect(path: &Path) -> Result<SourceKind, SourceError> {
    let meta = std::fs::metadata(path).map_err(io_err(path))?;
    if meta.is_dir() {
        if path.join("cur").is_dir() && path.join("new").is_dir() {
            Ok(SourceKind::Maildir)
        } else {
            Ok(SourceKind::Directory)
        }
    } else if meta.is_file() {
        let mut head = [0u8; 512];
        let mut f = File::open(path).map_err(io_err(path))?;
        let n = f.read(&mut head).map_err(io_err(path))?;
        // A byte-order mark and blank lines before the first `From ` line do not make
        // an mbox something else (the mbox reader skips both).
        let head = head.get(..n).unwrap_or_default();
        let head = head.strip_prefix(BOM).unwrap_or(head);
        let start = head
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(head.len());
        let blank_lines_only = head[..start].contains(&b'\n') || start == 0;
        // `From : x` is an obsolete-syntax From header, not an envelope line.
        if blank_lines_only && qd_mail::strip_mbox_envelope(&head[start..]).1 {
            // Both an mbox and a single message saved with its envelope line start so;
            // an mbox with one message is handled identically either way.
            Ok(SourceKind::Mbox)
        } else {
            Ok(SourceKind::SingleMessage)
        }
    } else {
        Err(SourceError::NotFileOrDir(path.to_path_buf()))
    }
}

/// Lists the message files of a directory source (recursively; for a Maildir, `cur/`
/// and `new/`), sorted by relative path, skipping hidden files and those at or before
/// `after`. Files that do not look like mail are returned too; the reader decides.
pub fn list_files(
    root: &Path,
    kind: &SourceKind,
    after: Option<&Position>,
) -> Result<Vec<(String, PathBuf)>, SourceError> {
    let roots: Vec<PathBuf> = match kind {
        SourceKind::Maildir => vec![root.join("cur"), root.join("new")],
        _ => vec![root.to_path_buf()],
    };
    let mut files = Vec::new();
    for r in roots {
        for entry in walkdir::WalkDir::new(&r).follow_links(false) {
            let entry = entry.map_err(|e| SourceError::Io {
                path: r.clone(),
                source: e.into(),
            })?;
            // A link to a message file is that file (search folders of mairix, mu and
            // notmuch are made of them); a link to a folder is not followed (a loop).
            let is_file = entry.file_type().is_file()
                || (entry.file_type().is_symlink()
                    && std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file()));
            if !is_file {
                continue;
            }
            let hidden = entry
                .path()
                .strip_prefix(root)
                .map(|rel| {
                    rel.components()
                        .any(|c| c.as_os_str().to_string_lossy().starts_with('.'))
                })
                .unwrap_or(false);
            if hidden {
                continue;
            }
            let rel = entry
                .path()
                .strip_prefix(root)
                .unwrap_or(entry.path())
                .to_string_lossy()
                .into_owned();
            files.push((rel, entry.into_path()));
        }
    }
    files.sort();
    if let Some(Position::Path(after)) = after {
        files.retain(|(rel, _)| rel.as_str() > after.as_str());
    }
    Ok(files)
}

/// Reads one file, refusing it unread when it is over the limit.
pub fn read_file(path: &Path, limit: u64) -> Result<Vec<u8>, ItemError> {
    let size = std::fs::metadata(path)
        .map_err(|e| ItemError::Read(e.to_string()))?
        .len();
    if size > limit {
        return Err(ItemError::TooLarge { size, limit });
    }
    let mut raw = std::fs::read(path).map_err(|e| ItemError::Read(e.to_string()))?;
    if raw.starts_with(BOM) {
        raw.drain(..BOM.len());
    }
    Ok(raw)
}

/// Whether resuming the mbox at `path` at `offset` is safe: the file still holds a
/// message that starts there (see [`qd_mail::mbox::starts_message_at`]). An mbox that was
/// compacted, truncated or replaced since the checkpoint was written fails this, and is
/// read again from its start (what is stored already is recognised by its content).
pub fn mbox_resumes_at(path: &Path, offset: u64) -> Result<bool, SourceError> {
    if offset == 0 {
        return Ok(true);
    }
    let mut f = File::open(path).map_err(io_err(path))?;
    let len = f.metadata().map_err(io_err(path))?.len();
    if offset >= len {
        // At the end: nothing was appended (the end of the last import). Past it: the
        // file shrank.
        return Ok(offset == len);
    }
    f.seek(SeekFrom::Start(offset - 1)).map_err(io_err(path))?;
    // The byte before, and an envelope line (they are short; a longer one is cut, and
    // its date then missing makes it fail, which only costs a reread).
    let mut around = Vec::with_capacity(1024);
    f.take(1024)
        .read_to_end(&mut around)
        .map_err(io_err(path))?;
    Ok(qd_mail::mbox::starts_message_at(&around))
}

/// Opens an mbox, positioned after `after` when resuming.
pub fn open_mbox(
    path: &Path,
    after: Option<&Position>,
) -> Result<MboxReader<BufReader<File>>, SourceError> {
    let mut f = File::open(path).map_err(io_err(path))?;
    let mut start = match after {
        Some(Position::Offset(o)) => *o,
        _ => 0,
    };
    if start == 0 {
        let mut head = [0u8; 3];
        let n = f.read(&mut head).map_err(io_err(path))?;
        if head.get(..n) == Some(BOM) {
            start = BOM.len() as u64;
        }
    }
    f.seek(SeekFrom::Start(start)).map_err(io_err(path))?;
    Ok(MboxReader::starting_at(
        BufReader::with_capacity(1 << 20, f),
        start,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_order() {
        for p in [Position::Path("a/b c".into()), Position::Offset(42)] {
            assert_eq!(Position::decode(&p.encode()), Some(p));
        }
        assert!(Position::Path("a/1".into()) < Position::Path("a/2".into()));
        assert!(Position::Offset(3) < Position::Offset(10));
        assert_eq!(Position::decode("bogus"), None);
    }

    /// A byte-order mark (saved by a Windows editor) and blank lines before the first
    /// `From ` line: still an mbox, still mail. Before, the BOM file was skipped as "not
    /// mail", and such an mbox was read as one message.
    #[test]
    fn a_byte_order_mark_or_leading_blank_lines_hide_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mbox = dir.path().join("box");
        std::fs::write(
            &mbox,
            "\u{feff}\n\nFrom a@b Mon Jan  1 00:00:00 2024\nFrom: a@b\n\none\n\nFrom c@d Mon Jan  1 00:00:00 2024\nFrom: c@d\n\ntwo\n",
        )
        .unwrap();
        assert_eq!(detect(&mbox).unwrap(), SourceKind::Mbox);
        let messages: Vec<_> = open_mbox(&mbox, None)
            .unwrap()
            .map(|m| m.unwrap().raw)
            .collect();
        assert_eq!(messages.len(), 2);
        assert!(
            messages[0].starts_with(b"From: a@b"),
            "{:?}",
            String::from_utf8_lossy(&messages[0])
        );

        let eml = dir.path().join("mail.eml");
        std::fs::write(&eml, "\u{feff}From: a@b\nSubject: s\n\nbody\n").unwrap();
        assert_eq!(detect(&eml).unwrap(), SourceKind::SingleMessage);
        let raw = read_file(&eml, 1 << 20).unwrap();
        assert!(raw.starts_with(b"From: a@b"));
        assert!(qd_mail::looks_like_mail(&raw));

        let indented = dir.path().join("indented");
        std::fs::write(&indented, "  From a@b\n").unwrap();
        assert_eq!(detect(&indented).unwrap(), SourceKind::SingleMessage);

        // The obsolete header syntax `From : x` (RFC 5322 4.5) opens a message, not an mbox.
        let obsolete = dir.path().join("obsolete.eml");
        std::fs::write(&obsolete, "From : a@b\nSubject: s\n\nbody\n").unwrap();
        assert_eq!(detect(&obsolete).unwrap(), SourceKind::SingleMessage);
    }

    /// A folder of links to message files (a mairix or notmuch search folder) lists the
    /// files they point to; a link to a folder is not followed.
    #[cfg(unix)]
    #[test]
    fn links_to_message_files_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        std::fs::create_dir_all(store.join("sub")).unwrap();
        std::fs::write(store.join("m1"), "From: a@b\n\nx\n").unwrap();
        let links = dir.path().join("results");
        std::fs::create_dir_all(&links).unwrap();
        std::os::unix::fs::symlink(store.join("m1"), links.join("hit1")).unwrap();
        std::os::unix::fs::symlink(store.join("sub"), links.join("folder")).unwrap();
        std::os::unix::fs::symlink(store.join("gone"), links.join("dangling")).unwrap();
        let files = list_files(&links, &SourceKind::Directory, None).unwrap();
        let names: Vec<&str> = files.iter().map(|(rel, _)| rel.as_str()).collect();
        assert_eq!(names, vec!["hit1"]);
        assert_eq!(
            read_file(&files[0].1, 1 << 20).unwrap(),
            b"From: a@b\n\nx\n"
        );
    }

    #[test]
    fn several_messages_in_one_file_are_told_from_one_saved_message() {
        let one = b"From a@b Mon Jan  1 00:00:00 2024\nFrom: a@b\n\nhello\n>From the start\n";
        assert!(!is_multi_message_mbox(one));
        let two = b"From a@b Mon Jan  1 00:00:00 2024\nFrom: a@b\n\none\n\nFrom c@d Mon Jan  1 00:00:00 2024\nFrom: c@d\n\ntwo\n";
        assert!(is_multi_message_mbox(two));
        assert!(
            !is_multi_message_mbox(b"From: a@b\n\none\n\nFrom c@d x\n"),
            "no envelope: a message"
        );
    }

    #[test]
    fn detects_kinds_and_lists_sorted_without_hidden_files() {
        let dir = tempfile::tempdir().unwrap();
        let md = dir.path().join("md");
        for d in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(md.join(d)).unwrap();
        }
        std::fs::write(md.join("new/2"), "Subject: x\n\nb").unwrap();
        std::fs::write(md.join("cur/1"), "Subject: y\n\nb").unwrap();
        std::fs::write(md.join("tmp/3"), "Subject: z\n\nb").unwrap();
        assert_eq!(detect(&md).unwrap(), SourceKind::Maildir);
        let files = list_files(&md, &SourceKind::Maildir, None).unwrap();
        let names: Vec<_> = files.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(
            names,
            ["cur/1", "new/2"],
            "tmp/ holds deliveries in progress"
        );

        let plain = dir.path().join("plain");
        std::fs::create_dir_all(plain.join("sub/.git")).unwrap();
        std::fs::write(plain.join("sub/b"), "x").unwrap();
        std::fs::write(plain.join("a"), "x").unwrap();
        std::fs::write(plain.join("sub/.git/c"), "x").unwrap();
        assert_eq!(detect(&plain).unwrap(), SourceKind::Directory);
        let after = Position::Path("a".into());
        let files = list_files(&plain, &SourceKind::Directory, Some(&after)).unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].0, "sub/b");

        std::fs::write(dir.path().join("m.mbox"), "From a@b Mon\nSubject: q\n\nx\n").unwrap();
        assert_eq!(
            detect(&dir.path().join("m.mbox")).unwrap(),
            SourceKind::Mbox
        );
        std::fs::write(dir.path().join("one.eml"), "Subject: q\n\nx\n").unwrap();
        assert_eq!(
            detect(&dir.path().join("one.eml")).unwrap(),
            SourceKind::SingleMessage
        );
    }

    #[test]
    fn oversized_files_are_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big");
        std::fs::write(&p, vec![b'x'; 100]).unwrap();
        assert_eq!(
            read_file(&p, 99),
            Err(ItemError::TooLarge {
                size: 100,
                limit: 99
            })
        );
        assert_eq!(read_file(&p, 100).unwrap().len(), 100);
    }
}
