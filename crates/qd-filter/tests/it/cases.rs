//! Runs the data files in tests/cases/: one per check family, each case a raw message
//! with the tags it must (`### expect:`) and must not (`### not:`) produce, and
//! optionally its class (`### class:`).

use std::path::Path;

use qd_filter::{JudgeContext, MessageView, DEFAULT_WEIGHTS};

use crate::support::{base64, case_filter, zip};

struct Case {
    name: String,
    expect: Vec<String>,
    not: Vec<String>,
    class: Option<String>,
    raw: String,
}

fn parse(text: &str) -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    let mut in_headers = false;
    for line in text.split_inclusive('\n') {
        if let Some(name) = line.strip_prefix("### case:") {
            cases.push(Case {
                name: name.trim().to_owned(),
                expect: Vec::new(),
                not: Vec::new(),
                class: None,
                raw: String::new(),
            });
            in_headers = true;
            continue;
        }
        let Some(case) = cases.last_mut() else {
            continue; // file comments before the first case
        };
        let words = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        if in_headers {
            if let Some(t) = line.strip_prefix("### expect:") {
                case.expect.extend(words(t));
                continue;
            }
            if let Some(t) = line.strip_prefix("### not:") {
                case.not.extend(words(t));
                continue;
            }
            if let Some(t) = line.strip_prefix("### class:") {
                case.class = Some(t.trim().to_owned());
                continue;
            }
            in_headers = false;
        }
        case.raw.push_str(line);
    }
    cases
}

fn substitute(raw: &str) -> Vec<u8> {
    let eicar = qd_filter::signatures::eicar();
    let exe_zip = zip(&[("readme.txt", b"hello"), ("setup.exe", b"MZ\x90\x00")]);
    raw.replace("{{EICAR_B64}}", &base64(&eicar))
        .replace("{{ZIP_WITH_EXE_B64}}", &base64(&exe_zip))
        .replace("{{EICAR}}", std::str::from_utf8(&eicar).unwrap())
        .into_bytes()
}

fn run(family: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/cases")
        .join(format!("{family}.txt"));
    let text = std::fs::read_to_string(&path).unwrap();
    let cases = parse(&text);
    assert!(cases.len() >= 3, "{family}: too few cases");
    let filter = case_filter();
    let mut failures = Vec::new();
    for case in &cases {
        assert!(
            !case.expect.is_empty() || !case.not.is_empty() || case.class.is_some(),
            "{family}/{}: a case must assert something",
            case.name
        );
        let view = MessageView::from_raw(&substitute(&case.raw));
        let verdict = filter.judge(&view, &JudgeContext::pinned_to(&view));
        let fired: Vec<&str> = verdict.tags.iter().map(|t| t.name.as_str()).collect();
        for tag in fired
            .iter()
            .copied()
            .chain(case.expect.iter().map(String::as_str))
        {
            assert!(
                DEFAULT_WEIGHTS.iter().any(|(n, _, _)| *n == tag),
                "{family}/{}: tag {tag} has no default weight",
                case.name
            );
        }
        for e in &case.expect {
            if !fired.contains(&e.as_str()) {
                failures.push(format!(
                    "{family}/{}: expected {e}, got {fired:?}",
                    case.name
                ));
            }
        }
        for n in &case.not {
            if fired.contains(&n.as_str()) {
                failures.push(format!(
                    "{family}/{}: must not fire {n}, got {fired:?}",
                    case.name
                ));
            }
        }
        if let Some(class) = &case.class {
            if verdict.class.as_str() != class {
                failures.push(format!(
                    "{family}/{}: class {} (score {}), expected {class}; tags {fired:?}",
                    case.name,
                    verdict.class.as_str(),
                    verdict.score
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn received() {
    run("received");
}

#[test]
fn headers() {
    run("headers");
}

#[test]
fn upstream() {
    run("upstream");
}

#[test]
fn auth() {
    run("auth");
}

#[test]
fn mime() {
    run("mime");
}

#[test]
fn signatures() {
    run("signatures");
}
