//! MIME structure (RFC 2045–2049): HTML-only mail, declared type against file name,
//! executables, double extensions, macro-enabled Office files, archives holding
//! executables (from the archive listing only), deep nesting, odd encodings.

use qd_mail::view::PartInfo;
use qd_mail::MessageView;

use crate::util::Hits;

/// Extensions Windows runs or interprets on a double click.
const EXECUTABLE: &[&str] = &[
    "exe",
    "scr",
    "pif",
    "com",
    "bat",
    "cmd",
    "vbs",
    "vbe",
    "js",
    "jse",
    "wsf",
    "wsh",
    "hta",
    "cpl",
    "msi",
    "msp",
    "lnk",
    "jar",
    "ps1",
    "reg",
    "inf",
    "shs",
    "application",
    "gadget",
    "msc",
    "iso",
    "img",
    "vhd",
    "chm",
    "dll",
    "sys",
    "apk",
    "appx",
];

/// Office formats that carry macros (and the OLE formats that may).
const MACRO_OFFICE: &[&str] = &[
    "docm", "dotm", "xlsm", "xltm", "xlam", "pptm", "potm", "ppam", "ppsm", "sldm",
];

/// Extensions of documents and media that a double extension pretends to be.
const DECOY: &[&str] = &[
    "txt", "doc", "docx", "pdf", "jpg", "jpeg", "gif", "png", "bmp", "mp3", "wav", "avi", "mpg",
    "xls", "xlsx", "htm", "html", "zip", "rtf", "ppt",
];

fn extension(name: &str) -> Option<String> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let (stem, ext) = base.trim_end_matches(['.', ' ']).rsplit_once('.')?;
    (!stem.is_empty()).then(|| ext.to_ascii_lowercase())
}

fn second_extension(name: &str) -> Option<String> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let (stem, _) = base.trim_end_matches(['.', ' ']).rsplit_once('.')?;
    extension(stem)
}

fn is_executable_name(name: &str) -> bool {
    extension(name).is_some_and(|e| EXECUTABLE.contains(&e.as_str()))
}

/// Does the file's extension contradict its declared media type?
fn type_mismatch(part: &PartInfo, ext: &str) -> bool {
    let t = part.content_type.as_str();
    let expected: &[&str] = match ext {
        "jpg" | "jpeg" | "gif" | "png" | "bmp" | "tif" | "tiff" | "webp" => &["image"],
        "mp3" | "wav" | "ogg" | "m4a" | "mid" => &["audio"],
        "mp4" | "avi" | "mpg" | "mpeg" | "mov" => &["video"],
        "txt" | "csv" => &["text", "application"],
        "htm" | "html" => &["text"],
        _ if EXECUTABLE.contains(&ext) => &["application"],
        _ => return false,
    };
    // application/octet-stream is the generic fallback for every non-HTML file type.
    let generic = t == "application" && part.subtype == "octet-stream" && !ext.starts_with('h');
    !(expected.contains(&t) || generic)
}

pub(crate) fn check(view: &MessageView, hits: &mut Hits) {
    let parts = view.parts();
    let Some(root) = parts.first() else {
        return;
    };
    let leaves: Vec<&PartInfo> = parts
        .iter()
        .filter(|p| !p.is_multipart() && p.content_type != "message")
        .collect();
    let has_plain = leaves
        .iter()
        .any(|p| p.content_type == "text" && p.subtype == "plain" && p.file_name.is_none());
    let has_html = leaves
        .iter()
        .any(|p| p.content_type == "text" && p.subtype == "html" && p.file_name.is_none());
    if has_html && !has_plain {
        hits.add(
            "MIME_HTML_ONLY",
            "HTML body without a plain-text alternative",
        );
    }
    if root.mime_type() == "multipart/alternative" {
        let kinds: Vec<String> = parts
            .iter()
            .filter(|p| p.depth == 1)
            .map(PartInfo::mime_type)
            .collect();
        if kinds.len() < 2 {
            hits.add("MIME_ALTERNATIVE_SINGLE", "alternative with one part");
        }
    }
    if !has_plain && !has_html && leaves.iter().any(|p| p.content_type == "image") {
        hits.add("MIME_IMAGE_ONLY", "images and no text");
    }
    if view.header("MIME-Version").is_none()
        && parts
            .iter()
            .any(|p| !p.type_defaulted || p.transfer_encoding.is_some())
        && root.mime_type() != "text/plain"
    {
        hits.add("MIME_NO_VERSION", "MIME content without MIME-Version");
    }
    if parts.iter().any(|p| p.encoding_problem) {
        hits.add("MIME_MALFORMED", "a part does not decode as declared");
    }
    if let Some(depth) = parts.iter().map(|p| p.depth).max() {
        if view.truncated_tree() {
            // Parts below the depth the view walks were neither digested nor scanned:
            // the message is held back like one clamd could not scan (`judge`).
            hits.add(
                "MIME_DEEP_NESTING",
                format!("nested deeper than {depth} levels; the parts below were not scanned"),
            );
        } else if depth > 6 {
            hits.add("MIME_DEEP_NESTING", format!("nested {depth} levels"));
        }
    }
    if leaves.iter().any(|p| {
        p.content_type == "text"
            && p.file_name.is_none()
            && p.transfer_encoding.as_deref() == Some("base64")
    }) {
        hits.add("MIME_BASE64_TEXT", "body text hidden in base64");
    }
    if leaves.iter().any(|p| {
        p.content_type == "text"
            && p.charset.is_none()
            && p.subtype == "html"
            && p.file_name.is_none()
    }) {
        hits.add("MIME_HTML_NO_CHARSET", "HTML body without a charset");
    }
    let charsets: Vec<&str> = leaves
        .iter()
        .filter(|p| p.content_type == "text")
        .filter_map(|p| p.charset.as_deref())
        .collect();
    if charsets
        .iter()
        .any(|c| c.is_empty() || c.contains(char::is_whitespace) || c.len() > 40)
    {
        hits.add("MIME_BAD_CHARSET", "a charset that is not a charset name");
    }

    for part in &leaves {
        if let (Some(declared), true) = (part.declared_size, part.decoded_size > 0) {
            if declared.abs_diff(part.decoded_size) > declared / 10 + 64 {
                hits.add("MIME_SIZE_MISMATCH", "declared size differs from content");
            }
        }
        // Before the file-name checks: an archive needs no name to be opened (the view
        // lists zips by declared type and magic bytes too).
        if let Some(inner) = part.archive_entries.iter().find(|n| is_executable_name(n)) {
            let e = extension(inner).unwrap_or_default();
            hits.add("ARCHIVE_EXECUTABLE", format!("archive holds a .{e}"));
        }
        if part
            .archive_entries
            .iter()
            .any(|n| extension(n).is_some_and(|e| MACRO_OFFICE.contains(&e.as_str())))
        {
            hits.add("ARCHIVE_OFFICE_MACRO", "archive holds a macro-enabled file");
        }
        if part.archive_incomplete {
            // What is not listed is not checked: say so rather than pass it as clean.
            hits.add(
                "ARCHIVE_LISTING_INCOMPLETE",
                format!(
                    "zip listing incomplete ({} entries read)",
                    part.archive_entries.len()
                ),
            );
        }
        let Some(name) = part.file_name.as_deref() else {
            continue;
        };
        let ext = extension(name);
        if is_executable_name(name) {
            hits.add(
                "MIME_EXECUTABLE",
                format!("attachment type .{}", ext.as_deref().unwrap_or("")),
            );
            if second_extension(name).is_some_and(|e| DECOY.contains(&e.as_str())) {
                hits.add("MIME_DOUBLE_EXTENSION", "executable dressed as a document");
            }
            // Many spaces before the real extension push it out of sight.
            if name.contains("     ") {
                hits.add("MIME_DOUBLE_EXTENSION", "extension hidden behind spaces");
            }
        }
        if let Some(e) = ext.as_deref() {
            if MACRO_OFFICE.contains(&e) || part.subtype.contains("macroenabled") {
                hits.add("MIME_OFFICE_MACRO", format!("macro-enabled .{e}"));
            }
            if type_mismatch(part, e) {
                hits.add(
                    "MIME_TYPE_NAME_MISMATCH",
                    format!("declared {} but named .{e}", part.mime_type()),
                );
            }
        }
    }
}
