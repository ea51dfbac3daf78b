//! Streaming mbox reader.
//!
//! A message starts at a line beginning `From ` that opens the file (or the resume point),
//! or, further on, at a line with the full shape of an envelope line (sender, asctime
//! date); every other `From ` line is body text. Lines matching
//! `>+From ` lose one `>` (mboxrd unquoting, which is also right for the usual mboxo
//! files). The empty line that mbox writers put before the next `From ` line is a
//! separator, not message content, so it is dropped. Memory is one message at a time.

use std::io::{self, BufRead};

/// One message from an mbox file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MboxMessage {
    /// Byte offset of the message's `From ` line in the file (of its first byte when the
    /// file does not start with a `From ` line).
    pub offset: u64,
    /// The message without its `From ` line, `>From ` lines unquoted; empty when the
    /// message is over the reader's limit ([`MboxReader::with_limit`]).
    pub raw: Vec<u8>,
    /// The message's length in bytes (as `raw` would hold it without the limit).
    pub size: u64,
}

impl MboxMessage {
    /// Over the reader's limit: `raw` was not kept.
    pub fn over_limit(&self) -> bool {
        self.raw.len() as u64 != self.size
    }
}

/// Iterates over the messages of an mbox file.
///
/// To resume an import, store [`MboxReader::position`] after handling a message, then
/// seek the file there and call [`MboxReader::starting_at`] with that offset.
#[derive(Debug)]
pub struct MboxReader<R> {
    reader: R,
    /// File offset of the next unread byte.
    pos: u64,
    /// Offset of a `From ` line already read that opens the next message.
    next_from: Option<u64>,
    /// True before the first line: a `From ` line there needs no preceding empty line.
    at_start: bool,
    done: bool,
    /// Messages longer than this are measured but not kept.
    limit: u64,
}

impl<R: BufRead> MboxReader<R> {
    /// Reads an mbox file from its beginning.
    pub fn new(reader: R) -> Self {
        Self::starting_at(reader, 0)
    }

    /// Reads from the middle of a file. `reader` must already be positioned at byte
    /// `offset` (e.g. `File::seek` then `BufReader::new`); offsets in the messages are
    /// absolute. The first line is treated like the start of a file, so `offset` should be
    /// a message's `From ` line, such as a stored [`MboxReader::position`].
    pub fn starting_at(reader: R, offset: u64) -> Self {
        MboxReader {
            reader,
            pos: offset,
            next_from: None,
            at_start: true,
            done: false,
            limit: u64::MAX,
        }
    }

    /// Keeps at most `limit` bytes of a message in memory: a longer one is read through
    /// and returned with its size and an empty `raw`, so one 4 GB message (or a binary
    /// file without line breaks) cannot exhaust memory. Lines are read in pieces of at
    /// most `limit + 1` bytes for the same reason.
    pub fn with_limit(mut self, limit: u64) -> Self {
        self.limit = limit;
        self
    }

    /// Offset where the next message starts: store this as the checkpoint after handling
    /// a message; resuming there yields exactly the messages not yet returned.
    pub fn position(&self) -> u64 {
        self.next_from.unwrap_or(self.pos)
    }

    fn read_message(&mut self) -> io::Result<Option<MboxMessage>> {
        let mut offset = self.next_from.take();
        let mut raw = Vec::new();
        // Bytes of this message dropped for being over the limit.
        let mut dropped = 0u64;
        // The From_ line (if any) was consumed already, so the first line read is content.
        let mut prev_empty = self.at_start;
        // Whether the next piece read starts a line (pieces are cut at `limit + 1`).
        let mut at_line_start = true;
        let mut content_offset = self.pos;
        let piece = self.limit.saturating_add(1);
        loop {
            let line_start = raw.len();
            let line_offset = self.pos;
            let n = io::Read::take(&mut self.reader, piece).read_until(b'\n', &mut raw)?;
            if n == 0 {
                self.done = true;
                return Ok(finish(
                    offset.unwrap_or(content_offset),
                    raw,
                    dropped,
                    offset.is_some(),
                ));
            }
            self.pos += n as u64;
            self.at_start = false;
            let starts_line = at_line_start;
            at_line_start = raw.ends_with(b"\n");
            let line = raw.get(line_start..).unwrap_or_default();
            let nothing_before = offset.is_none()
                && dropped == 0
                && raw
                    .get(..line_start)
                    .is_some_and(|r| r.iter().all(u8::is_ascii_whitespace));
            let from_line = if nothing_before {
                crate::envelope::is_envelope_line(line)
            } else {
                is_separator(line)
            };
            // Inside the file an envelope-shaped line needs no empty line before it.
            if starts_line && from_line && (prev_empty || !nothing_before) {
                raw.truncate(line_start);
                if nothing_before {
                    // Blank lines before the first From_ line are not a message.
                    offset = Some(line_offset);
                    raw.clear();
                    prev_empty = false;
                    continue;
                }
                self.next_from = Some(line_offset);
                return Ok(finish(offset.unwrap_or(content_offset), raw, dropped, true));
            }
            prev_empty = starts_line && (line == b"\n" || line == b"\r\n");
            if offset.is_none()
                && line_start == 0
                && dropped == 0
                && line.iter().all(u8::is_ascii_whitespace)
            {
                // Leading blank lines of a file without a From_ line are not content.
                raw.clear();
                content_offset = self.pos;
                continue;
            }
            let quotes = line.iter().take_while(|&&b| b == b'>').count();
            if starts_line
                && quotes > 0
                && line.get(quotes..).is_some_and(|l| l.starts_with(b"From "))
            {
                raw.remove(line_start);
            }
            // Two bytes of slack: the separator line before the next From_ line is
            // still in `raw` here, and `finish` drops it.
            if raw.len() as u64 > self.limit.saturating_add(2) {
                // Over the limit: count, keep nothing.
                dropped += raw.len() as u64;
                raw.clear();
            }
        }
    }
}

/// Whether a `From ` line inside the file starts the next message: only when it has the
/// shape of an envelope line, `From sender Www Mmm dd hh:mm:ss [zone] yyyy` (asctime, as
/// every mbox writer puts it; a comma after the weekday is allowed). A body line such as
/// `From our side all is fine.` or `From 1 March 2024 we open at 9:00.`, which mboxo
/// writers leave unquoted, stays in its message instead of cutting it in two and being
/// lost. A line of that shape starts a message even without an empty line before it (two
/// mbox files joined with `cat`, the first without a final empty line), as mutt and
/// Python's mailbox read it.
fn is_separator(line: &[u8]) -> bool {
    if !crate::envelope::is_envelope_line(line) {
        return false;
    }
    let date = line.get(5..).unwrap_or_default();
    let mut words = date
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
        .skip(1);
    const WEEKDAYS: [&[u8]; 7] = [b"mon", b"tue", b"wed", b"thu", b"fri", b"sat", b"sun"];
    const MONTHS: [&[u8]; 12] = [
        b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov",
        b"dec",
    ];
    let named = |word: Option<&[u8]>, names: &[&[u8]]| {
        word.map(|w| w.strip_suffix(b",").unwrap_or(w))
            .is_some_and(|w| names.iter().any(|n| w.eq_ignore_ascii_case(n)))
    };
    if !named(words.next(), &WEEKDAYS) || !named(words.next(), &MONTHS) {
        return false;
    }
    let has_time = date.windows(4).any(|w| {
        w[0].is_ascii_digit() && w[1] == b':' && w[2].is_ascii_digit() && w[3].is_ascii_digit()
    });
    let has_year = date
        .split(|b| !b.is_ascii_digit())
        .any(|run| run.len() == 4);
    has_time && has_year
}

/// Whether `offset` in an mbox file, whose bytes from one before it are `around`
/// (`around[0]` is the byte before `offset`), is where a message starts: a line that
/// follows a line break and has the shape of an envelope line. A stored
/// [`MboxReader::position`] is, as long as the file was only appended to; after a mail
/// client compacted it or another export was saved over it, it mostly is not.
pub fn starts_message_at(around: &[u8]) -> bool {
    match around.split_first() {
        Some((b'\n', line)) => {
            let end = line
                .iter()
                .position(|&b| b == b'\n')
                .map_or(line.len(), |i| i + 1);
            is_separator(&line[..end])
        }
        _ => false,
    }
}

/// Drops the separator line and decides whether anything was there at all.
fn finish(offset: u64, mut raw: Vec<u8>, dropped: u64, had_from_line: bool) -> Option<MboxMessage> {
    if raw.ends_with(b"\r\n") && raw.get(..raw.len() - 2).is_some_and(|r| r.ends_with(b"\n")) {
        raw.truncate(raw.len() - 2);
    } else if raw.ends_with(b"\n\n") {
        raw.pop();
    }
    if dropped > 0 {
        return Some(MboxMessage {
            offset,
            size: dropped + raw.len() as u64,
            raw: Vec::new(),
        });
    }
    if had_from_line || !raw.is_empty() {
        let size = raw.len() as u64;
        Some(MboxMessage { offset, raw, size })
    } else {
        None
    }
}

impl<R: BufRead> Iterator for MboxReader<R> {
    type Item = io::Result<MboxMessage>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.read_message() {
            Ok(message) => message.map(Ok),
            Err(err) => {
                // A reader that failed once is not trusted to make progress again.
                self.done = true;
                Some(Err(err))
            }
        }
    }
}

impl<R: BufRead> std::iter::FusedIterator for MboxReader<R> {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Cursor, Seek, SeekFrom};

    fn read_all(data: &[u8]) -> Vec<MboxMessage> {
        MboxReader::new(data).collect::<io::Result<_>>().unwrap()
    }

    #[test]
    fn splits_only_after_empty_lines_and_unquotes() {
        let data = b"From a@b Mon Jan  1 00:00:00 2024\nSubject: 1\n\nbody\nFrom here\n>From there\n>>From deeper\n\nFrom c@d Mon Jan  1 00:00:01 2024\nSubject: 2\n\nx\n";
        let msgs = read_all(data);
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0].offset, 0);
        assert_eq!(
            msgs[0].raw,
            b"Subject: 1\n\nbody\nFrom here\nFrom there\n>From deeper\n".to_vec()
        );
        let second = data.windows(7).position(|w| w == b"From c@").unwrap() as u64;
        assert_eq!(msgs[1].offset, second);
        assert_eq!(msgs[1].raw, b"Subject: 2\n\nx\n".to_vec());
    }

    /// A body line that starts "From " and has a date and a time in it is not an
    /// envelope line; one with the envelope's shape is, even without an empty line
    /// before it (two files joined with `cat`).
    #[test]
    fn only_envelope_shaped_lines_split() {
        let data = b"From a@b Mon Jan  1 00:00:00 2024\nSubject: hours\n\nHello,\n\nFrom 1 March 2024 we open at 9:00.\nBye\n";
        let msgs = read_all(data);
        assert_eq!(msgs.len(), 1, "{msgs:?}");
        assert!(msgs[0]
            .raw
            .ends_with(b"From 1 March 2024 we open at 9:00.\nBye\n"));

        let joined = b"From a@b Mon Jan  1 00:00:00 2024\nSubject: 1\n\nbody\nFrom b@c Tue, Jan  2 10:11:12 +0000 2024\nSubject: 2\n\nx\n";
        let msgs = read_all(joined);
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert_eq!(msgs[0].raw, b"Subject: 1\n\nbody\n".to_vec());
        assert_eq!(msgs[1].raw, b"Subject: 2\n\nx\n".to_vec());
    }

    #[test]
    fn file_without_from_line_is_one_message() {
        let msgs = read_all(b"\n\nSubject: s\n\nb\n");
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].offset, 2);
        assert_eq!(msgs[0].raw, b"Subject: s\n\nb\n".to_vec());
        assert!(read_all(b"").is_empty());
        assert!(read_all(b"\n\r\n").is_empty());
    }

    /// A message over the limit is measured, not held, and the messages around it are
    /// read as before; a "line" of many megabytes is read in pieces.
    #[test]
    fn a_message_over_the_limit_is_measured_not_held() {
        let mut data =
            b"From a Mon Jan  1 00:00:00 2024\nS: 1\n\nsmall\n\nFrom b Mon Jan  1 00:00:00 2024\nS: 2\n\n"
                .to_vec();
        data.extend(std::iter::repeat_n(b'x', 10_000));
        data.extend_from_slice(
            b"\nFrom inside a line is body\n\nFrom c Mon Jan  1 00:00:00 2024\nS: 3\n\nlast\n",
        );
        let msgs: Vec<MboxMessage> = MboxReader::new(&data[..])
            .with_limit(100)
            .collect::<io::Result<_>>()
            .unwrap();
        assert_eq!(msgs.len(), 3);
        assert_eq!(msgs[0].raw, b"S: 1\n\nsmall\n".to_vec());
        assert!(!msgs[0].over_limit());
        assert!(msgs[1].over_limit());
        assert!(msgs[1].raw.is_empty());
        assert!(
            (10_000..10_100).contains(&msgs[1].size),
            "measured: {}",
            msgs[1].size
        );
        assert_eq!(msgs[2].raw, b"S: 3\n\nlast\n".to_vec());
        // Without a limit, the same file reads the same way.
        let all = read_all(&data);
        assert_eq!(all.len(), 3);
        assert_eq!(all[1].size, all[1].raw.len() as u64);
        assert_eq!(all[1].size, msgs[1].size);
    }

    #[test]
    fn resumes_from_position() {
        let data = b"From a Mon Jan  1 00:00:00 2024\nS: 1\n\nFrom b Mon Jan  1 00:00:00 2024\nS: 2\n\nFrom c Mon Jan  1 00:00:00 2024\nS: 3\n";
        let mut reader = MboxReader::new(&data[..]);
        let first = reader.next().unwrap().unwrap();
        assert_eq!(first.raw, b"S: 1\n".to_vec());
        let checkpoint = reader.position();
        assert_eq!(checkpoint, 38);

        let mut file = Cursor::new(data.to_vec());
        file.seek(SeekFrom::Start(checkpoint)).unwrap();
        let rest: Vec<_> = MboxReader::starting_at(file, checkpoint)
            .collect::<io::Result<_>>()
            .unwrap();
        assert_eq!(rest.len(), 2);
        assert_eq!(rest[0].offset, 38);
        assert_eq!(rest[0].raw, b"S: 2\n".to_vec());
        assert_eq!(rest[1].raw, b"S: 3\n".to_vec());
    }

    /// A body line starting `From ` after an empty line, unquoted as mboxo writers leave
    /// it, stays in its message: it is no envelope line (no date). Before, it cut the
    /// message in two and was dropped as a separator.
    #[test]
    fn a_from_line_without_a_date_is_body_text() {
        let data = b"From a@b Mon Jan  1 00:00:00 2024\nFrom: a@b\nSubject: x\n\nHello,\n\n\
                     From our side all is fine.\n\nFrom 9:00 to 17:00 we answer.\nBye\n\n\
                     From c@d Tue Jan  2 10:11:12 2024\nSubject: 2\n\nx\n";
        let msgs = read_all(data);
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert_eq!(
            msgs[0].raw,
            b"From: a@b\nSubject: x\n\nHello,\n\nFrom our side all is fine.\n\n\
              From 9:00 to 17:00 we answer.\nBye\n"
                .to_vec()
        );
        assert_eq!(msgs[1].raw, b"Subject: 2\n\nx\n".to_vec());
        // Writers' envelope dates: asctime, and Gmail's with a zone before the year.
        assert!(is_separator(
            b"From MAILER-DAEMON Fri Jul  8 12:08:34 2011\n"
        ));
        assert!(is_separator(
            b"From 1234@xxx Sat Jan 01 00:00:00 +0000 2022\r\n"
        ));
        assert!(!is_separator(b"From : a@b Mon Jan  1 00:00:00 2024\n"));
    }

    struct Failing;
    impl io::Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("disk on fire"))
        }
    }

    #[test]
    fn an_io_error_ends_the_iteration() {
        let mut reader = MboxReader::new(io::BufReader::new(Failing));
        assert!(reader.next().unwrap().is_err());
        assert!(reader.next().is_none());
    }
}
