use std::collections::BTreeMap;

use tantivy::schema::Field;
use tantivy::snippet::SnippetGenerator;

use crate::schema::text_analyzer;
use crate::Query;

/// See [`SearchIndex::snippet`](crate::SearchIndex::snippet). Tantivy measures its window in
/// bytes, so a highlighted snippet of non-ASCII text holds fewer than `max_chars` characters.
pub(crate) fn snippet(query: &Query, text: &str, max_chars: usize, field: Field) -> String {
    // Equal weights: weighting rare terms would need a searcher, and the caller renders
    // a handful of snippets per page, where the first fragment with the most hits is good.
    let terms: BTreeMap<String, f32> = query
        .highlight_tokens()
        .map(|token| (token.to_string(), 1.0))
        .collect();
    if !terms.is_empty() {
        // `field` only matters for snippets of stored documents, which we have none of.
        let generator = SnippetGenerator::new(terms, text_analyzer(), field, max_chars);
        let snippet = generator.snippet(text);
        if !snippet.is_empty() {
            return snippet.to_html();
        }
    }
    escape_html(head(text, max_chars))
}

/// The first `max_chars` characters of `text`, cut back to a word boundary when there is one.
fn head(text: &str, max_chars: usize) -> &str {
    let text = text.trim_start();
    let Some((cut, _)) = text.char_indices().nth(max_chars) else {
        return text;
    };
    let window = &text[..cut];
    match window.rfind(char::is_whitespace) {
        Some(space) if space > 0 => window[..space].trim_end(),
        _ => window,
    }
}

/// The same five entities tantivy's highlighted snippets escape.
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_cuts_at_a_word_boundary() {
        assert_eq!(head("hello wonderful world", 12), "hello");
        assert_eq!(head("  short", 100), "short");
        assert_eq!(head("unbroken", 4), "unbr");
        assert_eq!(head("ééé ééé", 5), "ééé");
    }
}
