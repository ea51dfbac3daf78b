use std::collections::HashSet;

use qd_synth::{customers, write_customers_csv, write_maildir, write_mbox, SynthConfig};

use crate::sample;

#[test]
fn maildir_holds_every_message_once() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthConfig::new(21, 700);
    let root = dir.path().join("Maildir");
    assert_eq!(write_maildir(&cfg, &root).unwrap(), 700);
    for sub in ["cur", "tmp"] {
        assert_eq!(std::fs::read_dir(root.join(sub)).unwrap().count(), 0);
    }
    let expected: HashSet<Vec<u8>> = sample(21, 700).into_iter().map(|m| m.raw).collect();
    let mut found = 0;
    for entry in std::fs::read_dir(root.join("new")).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        assert!(!name.contains(':') && !name.starts_with('.'), "{name}");
        assert!(expected.contains(&std::fs::read(entry.path()).unwrap()));
        found += 1;
    }
    assert_eq!(found, 700);
    // Stable names: a second run overwrites instead of duplicating.
    assert_eq!(write_maildir(&cfg, &root).unwrap(), 700);
    assert_eq!(std::fs::read_dir(root.join("new")).unwrap().count(), 700);
}

/// Splits an mboxrd file back into messages (LF line endings, quoting undone).
fn read_mboxrd(data: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut previous_blank = true;
    for line in data.split_inclusive(|&b| b == b'\n') {
        if previous_blank && line.starts_with(b"From ") {
            if let Some(last) = out.last_mut() {
                last.pop(); // the blank line before the separator
            }
            out.push(Vec::new());
        } else {
            let cur = out.last_mut().expect("content after a separator");
            let gt = line.iter().take_while(|&&b| b == b'>').count();
            if gt > 0 && line[gt..].starts_with(b"From ") {
                cur.extend_from_slice(&line[1..]);
            } else {
                cur.extend_from_slice(line);
            }
        }
        previous_blank = line == b"\n";
    }
    if let Some(last) = out.last_mut() {
        last.pop();
    }
    out
}

#[test]
fn mbox_separates_quotes_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inbox.mbox");
    let cfg = SynthConfig::new(4, 1500);
    assert_eq!(write_mbox(&cfg, &path).unwrap(), 1500);
    let data = std::fs::read(&path).unwrap();
    assert!(!data.contains(&b'\r'), "mbox uses LF line endings");

    // Every line that starts with "From " is a separator: the quoting worked.
    let separators: Vec<&[u8]> = data
        .split(|&b| b == b'\n')
        .filter(|l| l.starts_with(b"From "))
        .collect();
    assert_eq!(separators.len(), 1500);
    for s in &separators {
        let s = std::str::from_utf8(s).unwrap();
        let parts: Vec<&str> = s.split_whitespace().collect();
        assert!(parts[1].contains('@') && parts.len() == 7, "{s}");
    }
    let quoted = data
        .split(|&b| b == b'\n')
        .filter(|l| l.starts_with(b">From "))
        .count();
    assert!(
        quoted > 0,
        "the sample must contain body lines starting with From"
    );

    let originals = sample(4, 1500);
    let back = read_mboxrd(&data);
    assert_eq!(back.len(), originals.len());
    for (m, b) in originals.iter().zip(&back) {
        let lf: Vec<u8> = String::from_utf8(m.raw.clone())
            .unwrap()
            .replace("\r\n", "\n")
            .into_bytes();
        assert!(lf == *b, "round trip differs for {}", m.message_id);
    }
}

#[test]
fn customers_csv_lists_every_address() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("customers.csv");
    let cfg = SynthConfig::new(6, 4000);
    write_customers_csv(&cfg, &path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("email,name,status"));
    let rows: Vec<&str> = lines.collect();
    let list = customers(&cfg);
    assert_eq!(rows.len(), list.len());
    for (row, c) in rows.iter().zip(&list) {
        assert_eq!(*row, format!("{},{},{}", c.email, c.name, c.status));
    }
}
