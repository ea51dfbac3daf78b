//! Writing systems the desk does not expect: text parts, or encoded header words, in a
//! charset that only serves a script outside `filter.expected_scripts` (SpamAssassin's
//! `CHARSET_FARAWAY` idea, with scripts instead of locales). Reads charset names only,
//! never the text they encode. Unicode and ASCII charsets say nothing about the script.

use std::collections::BTreeSet;

use qd_mail::MessageView;

use crate::settings::Script;
use crate::util::Hits;

/// The one script a charset serves, or `None` for Unicode, ASCII and names we do not
/// know (`MIME_BAD_CHARSET` judges broken names).
pub(crate) fn script_of(charset: &str) -> Option<Script> {
    let c = charset.trim().trim_matches('"').to_ascii_lowercase();
    let c = c.as_str();
    let one_of = |names: &[&str]| names.contains(&c);
    if one_of(&[
        "iso-8859-5",
        "windows-1251",
        "cp1251",
        "koi8-r",
        "koi8-u",
        "ibm866",
        "cp866",
        "x-mac-cyrillic",
    ]) {
        Some(Script::Cyrillic)
    } else if one_of(&["iso-8859-7", "windows-1253", "cp1253"]) {
        Some(Script::Greek)
    } else if one_of(&["iso-8859-6", "windows-1256", "cp1256"]) {
        Some(Script::Arabic)
    } else if one_of(&["iso-8859-8", "iso-8859-8-i", "windows-1255", "cp1255"]) {
        Some(Script::Hebrew)
    } else if one_of(&["tis-620", "windows-874", "cp874", "iso-8859-11"]) {
        Some(Script::Thai)
    } else if one_of(&[
        "gb2312",
        "gbk",
        "gb18030",
        "hz-gb-2312",
        "euc-cn",
        "x-gbk",
        "cp936",
        "big5",
        "big5-hkscs",
        "x-big5",
        "euc-tw",
        "cp950",
        "iso-2022-cn",
        "euc-jp",
        "iso-2022-jp",
        "iso-2022-jp-2",
        "shift_jis",
        "shift-jis",
        "sjis",
        "x-sjis",
        "windows-31j",
        "cp932",
        "euc-kr",
        "ks_c_5601-1987",
        "ks_c_5601",
        "iso-2022-kr",
        "cp949",
        "windows-949",
        "uhc",
    ]) {
        Some(Script::Cjk)
    } else if c.starts_with("iso-8859-")
        || c.starts_with("windows-125")
        || c.starts_with("cp125")
        || one_of(&[
            "latin1",
            "latin-1",
            "cp850",
            "ibm850",
            "macintosh",
            "x-mac-roman",
        ])
    {
        // The remaining ISO 8859 and Windows code pages are Latin (1–4, 9, 10, 13–16;
        // 1250, 1252, 1254, 1257, 1258).
        Some(Script::Latin)
    } else {
        None
    }
}

pub(crate) fn check(view: &MessageView, expected: &[Script], hits: &mut Hits) {
    if expected.is_empty() {
        return;
    }
    let parts = view
        .parts()
        .iter()
        .filter(|p| p.content_type == "text")
        .filter_map(|p| p.charset.as_deref());
    let words = view
        .headers()
        .iter()
        .flat_map(|h| h.encoded_charsets.iter().map(String::as_str));
    let foreign: BTreeSet<&'static str> = parts
        .chain(words)
        .filter_map(script_of)
        .filter(|s| !expected.contains(s))
        .map(Script::name)
        .collect();
    if !foreign.is_empty() {
        let names: Vec<&str> = foreign.into_iter().collect();
        hits.add(
            "CHARSET_FARAWAY",
            format!(
                "text in a {} charset, a script this desk does not expect",
                names.join("/")
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charsets_map_to_their_script() {
        assert_eq!(script_of("Big5"), Some(Script::Cjk));
        assert_eq!(script_of("\"ks_c_5601-1987\""), Some(Script::Cjk));
        assert_eq!(script_of("windows-1251"), Some(Script::Cyrillic));
        assert_eq!(script_of("ISO-8859-15"), Some(Script::Latin));
        assert_eq!(script_of("iso-8859-5"), Some(Script::Cyrillic));
        assert_eq!(script_of("utf-8"), None);
        assert_eq!(script_of("us-ascii"), None);
        assert_eq!(script_of("x-unknown"), None);
    }
}
