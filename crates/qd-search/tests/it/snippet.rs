//! Snippets: highlighting, escaping, fallback.

use crate::fixtures::q;
use qd_search::SearchIndex;

fn snippet(query: &str, text: &str, max: usize) -> String {
    SearchIndex::create_in_ram()
        .unwrap()
        .snippet(&q(query), text, max)
}

#[test]
fn matched_words_are_bold_and_markup_is_escaped() {
    assert_eq!(
        snippet("payment", "<script>alert('x')</script> payment & more", 200),
        "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; <b>payment</b> &amp; more"
    );
}

#[test]
fn highlighting_folds_case_and_accents_but_keeps_the_original_text() {
    assert_eq!(
        snippet("cafe", "Our Café opens", 100),
        "Our <b>Café</b> opens"
    );
    assert_eq!(
        snippet("\"late payment\" from:bob", "A LATE payment, bob.", 100),
        "A <b>LATE</b> <b>payment</b>, bob"
    );
}

#[test]
fn excluded_words_and_filters_are_not_highlighted() {
    assert_eq!(
        snippet("-late status:open", "late again", 100),
        "late again"
    );
}

#[test]
fn the_window_is_around_the_match() {
    let text = format!("{} needle {}", "hay ".repeat(100), "straw ".repeat(100));
    let s = snippet("needle", &text, 60);
    assert!(s.contains("<b>needle</b>"), "{s}");
    assert!(s.len() < 80, "{s}");
}

#[test]
fn without_a_match_the_start_of_the_text_is_escaped() {
    assert_eq!(
        snippet("zebra", "<b>not bold</b> & the rest of a long text", 20),
        "&lt;b&gt;not bold&lt;/b&gt; &amp;"
    );
    assert_eq!(snippet("", "short <text>", 100), "short &lt;text&gt;");
    assert_eq!(snippet("x", "", 100), "");
}
