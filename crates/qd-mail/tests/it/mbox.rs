use std::io::{BufReader, Cursor, Seek, SeekFrom};

use qd_mail::mbox::{MboxMessage, MboxReader};

use crate::fixture;

fn read(data: &[u8]) -> Vec<MboxMessage> {
    MboxReader::new(data)
        .collect::<std::io::Result<_>>()
        .unwrap()
}

#[test]
fn three_crlf_messages_with_from_quoting() {
    let data = fixture("three.mbox");
    let msgs = read(&data);
    assert_eq!(msgs.len(), 3);

    for msg in &msgs {
        let at = msg.offset as usize;
        assert!(data[at..].starts_with(b"From sender"), "offset {at}");
    }
    assert_eq!(msgs[0].offset, 0);

    assert_eq!(
        msgs[0].raw,
        b"From: one@example.com\r\nSubject: first\r\nMessage-ID: <m1@example.com>\r\n\r\n\
          Hello\r\nFrom the quoted line\r\nFrom the unquoted mboxo line\r\n"
            .to_vec()
    );
    assert!(msgs[1]
        .raw
        .ends_with(b"Second body\r\n>From double quoted\r\n"));
    assert!(msgs[2].raw.ends_with(b"Third body\r\n"));

    let subjects: Vec<_> = msgs
        .iter()
        .map(|m| qd_mail::parse(&m.raw).subject.unwrap())
        .collect();
    assert_eq!(subjects, ["first", "second", "third"]);
    let first = qd_mail::parse(&msgs[0].raw);
    assert!(first.text.contains("From the quoted line"));
    assert_eq!(first.size, msgs[0].raw.len());
}

#[test]
fn resume_after_the_first_message() {
    let data = fixture("three.mbox");
    let mut reader = MboxReader::new(BufReader::new(Cursor::new(&data)));
    let first = reader.next().unwrap().unwrap();
    let checkpoint = reader.position();
    assert_eq!(read(&data)[1].offset, checkpoint);

    let mut file = Cursor::new(&data);
    file.seek(SeekFrom::Start(checkpoint)).unwrap();
    let rest: Vec<_> = MboxReader::starting_at(BufReader::new(file), checkpoint)
        .collect::<std::io::Result<_>>()
        .unwrap();
    assert_eq!(rest.len(), 2);
    assert_eq!(rest, read(&data)[1..]);
    assert_ne!(rest[0], first);
}

#[test]
fn every_message_of_an_mbox_hashes_like_its_eml_copy() {
    let data = fixture("three.mbox");
    let eml = b"From: two@example.com\nSubject: second\nMessage-ID: <m2@example.com>\n\n\
                Second body\n>From double quoted\n";
    let msgs = read(&data);
    assert_eq!(
        qd_mail::parse(&msgs[1].raw).content_hash,
        qd_mail::parse(eml).content_hash
    );
}
