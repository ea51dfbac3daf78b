//! Virus cases from Debian's clamav-testfiles (harmless files ClamAV's own tests use),
//! with a signature set the tests write themselves; EICAR assembled at test time; a
//! private clamd (Debian clamav-daemon) for the INSTREAM client.

use std::path::{Path, PathBuf};

use md5::Digest as _;
use qd_filter::{
    Class, Filter, FilterSettings, JudgeContext, MessageView, SignatureDb, UnreachablePolicy,
};

use crate::support::{base64, case_settings, with_attachment, with_part, zip};

const TESTFILES: &str = "/usr/share/clamav-testfiles";

fn testfile(name: &str) -> Vec<u8> {
    let path = Path::new(TESTFILES).join(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}. Install Debian's clamav-testfiles (`apt-get install -y \
             clamav-testfiles`; .ci/run does)",
            path.display()
        )
    })
}

/// `.hdb`, `.hsb` and `.ndb` lines for clam.exe and EICAR, as (file name, contents).
fn signature_files() -> Vec<(&'static str, Vec<u8>)> {
    let exe = testfile("clam.exe");
    let eicar = qd_filter::signatures::eicar();
    let hdb = format!(
        "{}:{}:Test.ClamExe.MD5\n{}:{}:Test.Eicar.MD5\n",
        hex::encode(md5::Md5::digest(&exe)),
        exe.len(),
        hex::encode(md5::Md5::digest(&eicar)),
        eicar.len()
    );
    let hsb = format!(
        "{}:{}:Test.ClamExe.SHA256\n",
        hex::encode(sha2::Sha256::digest(&exe)),
        exe.len()
    );
    // 40 bytes from inside clam.exe with two wildcards, at any offset.
    let mut pattern = hex::encode(&exe[100..140]);
    pattern.replace_range(10..12, "??");
    pattern.replace_range(30..32, "??");
    let ndb = format!("Test.ClamExe.Pattern:0:*:{pattern}\nUnsupported.Syntax:0:*:41{{2-4}}42\n");
    vec![
        ("test.hdb", hdb.into_bytes()),
        ("test.hsb", hsb.into_bytes()),
        ("test.ndb", ndb.into_bytes()),
    ]
}

fn signature_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, contents) in signature_files() {
        std::fs::write(dir.path().join(name), contents).unwrap();
    }
    dir
}

fn filter_with(dir: &Path, clamd: Option<String>) -> Filter {
    let mut s = case_settings();
    s.signatures_dir = Some(PathBuf::from(dir));
    s.clamd.address = clamd;
    s.clamd.timeout_ms = 10_000;
    Filter::new(s).unwrap()
}

fn judge(filter: &Filter, raw: &[u8]) -> qd_filter::Verdict {
    let view = MessageView::from_raw(raw);
    filter.judge(&view, &JudgeContext::pinned_to(&view))
}

fn detail(v: &qd_filter::Verdict, tag: &str) -> Option<String> {
    v.tags
        .iter()
        .find(|t| t.name == tag)
        .map(|t| t.detail.clone())
}

#[test]
fn signature_directory_loads_the_supported_subset() {
    let dir = signature_dir();
    let db = SignatureDb::load_dir(dir.path()).unwrap();
    let r = db.report();
    // Built-in EICAR hashes come on top of the files' lines.
    assert!(r.md5 >= 2 && r.sha256 >= 1 && r.patterns == 1, "{r:?}");
    assert_eq!(r.skipped, 1, "the {{n-m}} pattern is outside the subset");
}

#[test]
fn clam_exe_attachment_matches_hash_and_pattern_signatures() {
    let dir = signature_dir();
    let filter = filter_with(dir.path(), None);
    let v = judge(
        &filter,
        &with_attachment(
            "clam.exe",
            "application/x-msdownload",
            &testfile("clam.exe"),
        ),
    );
    assert_eq!(v.class, Class::Virus, "{v:?}");
    let names = detail(&v, "VIRUS_SIGNATURE").unwrap();
    for expected in [
        "Test.ClamExe.MD5",
        "Test.ClamExe.SHA256",
        "Test.ClamExe.Pattern",
    ] {
        assert!(names.contains(expected), "{names}");
    }
    assert!(v.reject);
    // The verdict names the infected part by its digest, so the store can quarantine
    // that attachment and no other.
    let sha = hex::encode(sha2::Sha256::digest(testfile("clam.exe")));
    assert_eq!(v.infected, vec![sha]);
}

#[test]
fn clam_mail_from_testfiles_is_a_virus() {
    let dir = signature_dir();
    let v = judge(&filter_with(dir.path(), None), &testfile("clam.mail"));
    assert_eq!(v.class, Class::Virus, "{v:?}");
}

#[test]
fn office_file_embedding_clam_exe_matches_the_pattern() {
    let dir = signature_dir();
    let v = judge(
        &filter_with(dir.path(), None),
        &with_attachment(
            "report.doc",
            "application/msword",
            &testfile("clam.ole.doc"),
        ),
    );
    assert_eq!(v.class, Class::Virus, "{v:?}");
    assert!(detail(&v, "VIRUS_SIGNATURE")
        .unwrap()
        .contains("Test.ClamExe.Pattern"));
}

#[test]
fn zip_listing_reveals_the_executable_without_unpacking() {
    let dir = signature_dir();
    let v = judge(
        &filter_with(dir.path(), None),
        &with_attachment("clam.zip", "application/zip", &testfile("clam.zip")),
    );
    assert!(detail(&v, "ARCHIVE_EXECUTABLE").is_some(), "{v:?}");
}

#[test]
fn eicar_in_a_stored_zip_is_found_by_pattern() {
    let eicar = qd_filter::signatures::eicar();
    let archive = zip(&[("eicar.com", &eicar)]);
    let filter = Filter::new(FilterSettings::default()).unwrap();
    let v = judge(
        &filter,
        &with_attachment("test.zip", "application/zip", &archive),
    );
    assert_eq!(v.class, Class::Virus, "{v:?}");
}

/// EICAR attached as a text file, or as a binary whose base64 has one stray character:
/// mail-parser turns both into text parts, which were never scanned.
#[test]
fn eicar_as_text_or_with_broken_base64_is_found() {
    let eicar = qd_filter::signatures::eicar();
    let filter = Filter::new(FilterSettings::default()).unwrap();
    let v = judge(
        &filter,
        &with_attachment("invoice.js", "text/plain", &eicar),
    );
    assert_eq!(v.class, Class::Virus, "{v:?}");

    let raw = String::from_utf8(with_attachment(
        "setup.exe",
        "application/octet-stream",
        &eicar,
    ))
    .unwrap();
    let encoded = crate::support::base64(&eicar);
    let broken = raw.replacen(&encoded, &format!("{}!{}", &encoded[..8], &encoded[8..]), 1);
    assert_ne!(raw, broken);
    let v = judge(&filter, broken.as_bytes());
    assert_eq!(v.class, Class::Virus, "{v:?}");
}

/// Parts nested deeper than the view walks are not scanned: the message is held back
/// (quarantined as spam) and the verdict says why, instead of passing as ham.
#[test]
fn parts_too_deep_to_scan_are_quarantined() {
    let eicar = qd_filter::signatures::eicar();
    let mut raw = String::from(
        "From: Alice <alice@example.com>\nTo: help@quietdesk.example\nSubject: deep\n\
         Date: Mon, 4 Mar 2024 10:00:00 +0000\nMessage-ID: <deep@example.com>\nMIME-Version: 1.0\n",
    );
    for level in 0..40 {
        raw.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"l{level}\"\n\n--l{level}\n"
        ));
    }
    raw.push_str(&format!(
        "Content-Type: application/octet-stream; name=\"e.com\"\nContent-Transfer-Encoding: base64\n\n{}\n",
        crate::support::base64(&eicar)
    ));
    for level in (0..40).rev() {
        raw.push_str(&format!("--l{level}--\n"));
    }
    let filter = Filter::new(FilterSettings::default()).unwrap();
    let v = judge(&filter, raw.as_bytes());
    assert_ne!(v.class, Class::Ham, "{v:?}");
    let why = detail(&v, "MIME_DEEP_NESTING").expect("the verdict says why");
    assert!(why.contains("not scanned"), "{why}");
}

/// One junk byte before a zip shifts its directory offsets: unzip still opens it, and
/// the listing still names the executable inside.
#[test]
fn an_archive_with_prepended_bytes_is_still_listed() {
    let archive = [&b"X"[..], &zip(&[("run.exe", b"MZ\x90\x00")])].concat();
    let v = judge(
        &Filter::new(FilterSettings::default()).unwrap(),
        &with_attachment("docs.zip", "application/zip", &archive),
    );
    assert!(detail(&v, "ARCHIVE_EXECUTABLE").is_some(), "{v:?}");
}

/// A zip is an archive whatever its part looks like: declared application/zip with no
/// file name, named `.zip` but declared text/plain, or with one stray character in its
/// base64 (mail-parser turns the last two into text parts). Each was scanned but never
/// listed, or listed but never checked.
#[test]
fn an_executable_in_a_zip_is_found_without_a_name_as_text_or_in_broken_base64() {
    let filter = Filter::new(FilterSettings::default()).unwrap();
    let archive = zip(&[("readme.txt", b"hello"), ("run.exe", b"MZ\x90\x00")]);
    let encoded = base64(&archive);
    let broken = format!("{}!{}", &encoded[..8], &encoded[8..]);
    let forms = [
        (
            "declared zip, no name",
            "Content-Type: application/zip\nContent-Transfer-Encoding: base64\n",
            encoded.clone(),
        ),
        (
            "no type, no name, zip magic",
            "Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n",
            encoded.clone(),
        ),
        (
            "declared text/plain",
            "Content-Type: text/plain; name=\"docs.zip\"\nContent-Transfer-Encoding: base64\n\
             Content-Disposition: attachment; filename=\"docs.zip\"\n",
            encoded.clone(),
        ),
        (
            "broken base64",
            "Content-Type: application/zip; name=\"docs.zip\"\nContent-Transfer-Encoding: base64\n",
            broken,
        ),
    ];
    for (form, headers, body) in forms {
        let v = judge(&filter, &with_part(headers, &body));
        assert!(detail(&v, "ARCHIVE_EXECUTABLE").is_some(), "{form}: {v:?}");
        assert!(
            detail(&v, "ARCHIVE_LISTING_INCOMPLETE").is_none(),
            "{form}: {v:?}"
        );
    }
}

/// `entries` as a zip64 archive: the end record's counts and offsets all ones, the real
/// ones in a zip64 end record found through its locator (APPNOTE 4.3.14, 4.3.15).
fn zip64(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let plain = zip(entries);
    let eocd = plain.len() - 22;
    let field = |at: usize| u32::from_le_bytes(plain[at..at + 4].try_into().unwrap()) as u64;
    let (cd_size, cd_offset) = (field(eocd + 12), field(eocd + 16));
    let count = entries.len() as u64;
    let mut out = plain[..eocd].to_vec();
    let record_at = out.len() as u64;
    out.extend_from_slice(b"PK\x06\x06");
    out.extend_from_slice(&44u64.to_le_bytes()); // size of the rest of the record
    out.extend_from_slice(&45u16.to_le_bytes()); // made by
    out.extend_from_slice(&45u16.to_le_bytes()); // version needed
    out.extend_from_slice(&[0; 8]); // disks
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&cd_size.to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(b"PK\x06\x07");
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&record_at.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(b"PK\x05\x06");
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&[0xFF; 4]); // entry counts
    out.extend_from_slice(&[0xFF; 8]); // directory size and offset
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// A listing cut at its limit, or one that could not be read (a zip64 archive listed
/// nothing), used to pass as a clean archive. Now zip64 is read, and what cannot be
/// listed in full says so.
#[test]
fn a_zip_listing_that_is_cut_or_unreadable_is_flagged() {
    let filter = Filter::new(FilterSettings::default()).unwrap();
    let exe: &[u8] = b"MZ\x90\x00";

    let v = judge(
        &filter,
        &with_attachment("big.zip", "application/zip", &zip64(&[("run.exe", exe)])),
    );
    assert!(detail(&v, "ARCHIVE_EXECUTABLE").is_some(), "zip64: {v:?}");
    assert!(detail(&v, "ARCHIVE_LISTING_INCOMPLETE").is_none(), "{v:?}");

    // A zip64 end record that is not there: nothing can be listed.
    let mut damaged = zip64(&[("run.exe", exe)]);
    let locator = damaged.len() - 22 - 20;
    damaged[locator..locator + 4].copy_from_slice(b"XXXX");
    let v = judge(
        &filter,
        &with_attachment("big.zip", "application/zip", &damaged),
    );
    assert!(detail(&v, "ARCHIVE_LISTING_INCOMPLETE").is_some(), "{v:?}");

    // The executable after the first 1024 entries is not listed.
    let names: Vec<String> = (0..1100).map(|i| format!("f{i:04}.txt")).collect();
    let mut entries: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
    entries.push(("run.exe", exe));
    let v = judge(
        &filter,
        &with_attachment("many.zip", "application/zip", &zip(&entries)),
    );
    let why = detail(&v, "ARCHIVE_LISTING_INCOMPLETE").expect("flagged");
    assert!(why.contains("1024"), "{why}");

    // A whole listing, and a gzip (no zip at all), are not flagged.
    let v = judge(
        &filter,
        &with_attachment("ok.zip", "application/zip", &zip(&[("a.txt", b"a")])),
    );
    assert!(detail(&v, "ARCHIVE_LISTING_INCOMPLETE").is_none(), "{v:?}");
    let v = judge(
        &filter,
        &with_attachment("a.tar.gz", "application/gzip", b"\x1f\x8b\x08\x00junk"),
    );
    assert!(detail(&v, "ARCHIVE_LISTING_INCOMPLETE").is_none(), "{v:?}");
}

#[test]
fn clean_attachment_is_not_a_virus() {
    let dir = signature_dir();
    let v = judge(
        &filter_with(dir.path(), None),
        &with_attachment("notes.pdf", "application/pdf", b"%PDF-1.4\n%clean\n"),
    );
    assert_ne!(v.class, Class::Virus, "{v:?}");
    assert!(detail(&v, "VIRUS_SIGNATURE").is_none());
}

#[test]
fn clamd_finds_clam_exe_inside_archives_and_office_files() {
    let files = signature_files();
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .filter(|(n, _)| *n != "test.ndb") // clamd rejects the deliberately bad line
        .map(|(n, c)| (*n, c.as_slice()))
        .collect();
    let clamd = qd_testkit::Clamd::start(&refs).expect("start private clamd");
    let empty = tempfile::tempdir().unwrap();
    let filter = filter_with(empty.path(), Some(clamd.address()));
    for (name, ctype) in [
        ("clam.zip", "application/zip"),
        ("clam.tar.gz", "application/gzip"),
        ("clam.ppt", "application/vnd.ms-powerpoint"),
    ] {
        let v = judge(&filter, &with_attachment(name, ctype, &testfile(name)));
        assert_eq!(v.class, Class::Virus, "{name}: {v:?}");
        let found = detail(&v, "VIRUS_CLAMD").unwrap();
        assert!(found.contains("Test.ClamExe"), "{name}: {found}");
    }
    let v = judge(
        &filter,
        &with_attachment("notes.pdf", "application/pdf", b"%PDF-1.4\n%clean\n"),
    );
    assert_eq!(v.class, Class::Ham, "{v:?}");
    assert!(detail(&v, "CLAMD_UNREACHABLE").is_none());
    // The client speaks PING too.
    qd_filter::ClamdClient::new(&clamd.address(), std::time::Duration::from_secs(5))
        .ping()
        .unwrap();
}

#[test]
fn unreachable_clamd_quarantines_by_default() {
    // A port that was free a moment ago: nothing listens there.
    let address = format!("127.0.0.1:{}", qd_testkit::free_port());
    let empty = tempfile::tempdir().unwrap();
    let raw = with_attachment("notes.pdf", "application/pdf", b"%PDF-1.4\n%clean\n");
    let v = judge(&filter_with(empty.path(), Some(address.clone())), &raw);
    assert!(detail(&v, "CLAMD_UNREACHABLE").is_some(), "{v:?}");
    assert_eq!(v.class, Class::Spam, "quarantine means not ham: {v:?}");

    let mut s = case_settings();
    s.clamd.address = Some(address);
    s.clamd.unreachable = UnreachablePolicy::Tag;
    let v = judge(&Filter::new(s).unwrap(), &raw);
    assert!(detail(&v, "CLAMD_UNREACHABLE").is_some(), "{v:?}");
    assert_eq!(
        v.class,
        Class::Ham,
        "tag policy lets the score decide: {v:?}"
    );
}

/// clamd refusing an attachment as larger than its StreamMaxLength is not an outage: the
/// verdict says what happened, and the unreachable policy (quarantine by default) still
/// holds the unscanned message back.
#[cfg(unix)]
#[test]
fn an_attachment_over_clamds_size_limit_is_held_back_under_its_own_tag() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clamd.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let mut head = [0u8; 64];
            let _ = stream.read_exact(&mut head);
            let _ = stream.write_all(b"INSTREAM size limit exceeded. ERROR\0");
        }
    });
    let mut s = case_settings();
    s.clamd.address = Some(path.to_str().unwrap().to_owned());
    let raw = with_attachment("notes.pdf", "application/pdf", &vec![b'%'; 1 << 20]);
    let v = judge(&Filter::new(s).unwrap(), &raw);
    assert!(detail(&v, "CLAMD_SIZE_LIMIT").is_some(), "{v:?}");
    assert!(detail(&v, "CLAMD_UNREACHABLE").is_none(), "{v:?}");
    assert_eq!(v.class, Class::Spam, "quarantine means not ham: {v:?}");
}
