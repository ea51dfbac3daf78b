use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST, INDEXED, STORED,
};
use tantivy::tokenizer::{
    AsciiFoldingFilter, BoxTokenStream, LowerCaser, RawTokenizer, SimpleTokenizer, TextAnalyzer,
    Token, TokenFilter, TokenStream, Tokenizer, TokenizerManager,
};
use tantivy::TantivyDocument;

use crate::SearchDoc;

// The analyzer names are part of the schema that is saved with the index, so an index built
// with an older analyzer fails the schema comparison on open and gets rebuilt. Change the
// analyzer, bump the version in its name.
pub(crate) const TEXT_ANALYZER: &str = "qd_text_v2";
pub(crate) const KEYWORD_ANALYZER: &str = "qd_keyword_v1";
pub(crate) const PAIR_ANALYZER: &str = "qd_pairs_v2";

/// Tokens longer than this keep only their first bytes (cut at a character boundary). In
/// mail they are hashes, long identifiers, base64 runs and, without spaces between words,
/// whole sentences of Chinese or Japanese. Dropping them (version 1) made a query for
/// such a word match everything (an empty query) and a phrase around one match nothing;
/// cut, they are found by the same cut in the query, and keep the term dictionary small.
const MAX_TOKEN_BYTES: usize = 64;

pub(crate) const MESSAGE_DB_ID: &str = "message_db_id";
pub(crate) const TICKET_NUMBER: &str = "ticket_number";
pub(crate) const TICKET_ID: &str = "ticket_id";
pub(crate) const DATE: &str = "date";

/// Words: split on anything not alphanumeric, lower-cased, folded to ASCII ("Café" is found
/// by "cafe"). An address `alice@example.com` becomes `alice example com`, so a full address
/// is a phrase over its parts and a partial one is one of them. The query parser analyses
/// query words with the same function.
pub(crate) fn text_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .filter(CutLong)
        .build()
}

/// Cuts tokens to [`MAX_TOKEN_BYTES`].
#[derive(Clone)]
pub(crate) struct CutLong;

impl TokenFilter for CutLong {
    type Tokenizer<T: Tokenizer> = CutLongTokenizer<T>;

    fn transform<T: Tokenizer>(self, tokenizer: T) -> CutLongTokenizer<T> {
        CutLongTokenizer { inner: tokenizer }
    }
}

#[derive(Clone)]
pub(crate) struct CutLongTokenizer<T> {
    inner: T,
}

impl<T: Tokenizer> Tokenizer for CutLongTokenizer<T> {
    type TokenStream<'a> = CutLongStream<T::TokenStream<'a>>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> Self::TokenStream<'a> {
        CutLongStream {
            tail: self.inner.token_stream(text),
        }
    }
}

pub(crate) struct CutLongStream<S> {
    tail: S,
}

impl<S: TokenStream> TokenStream for CutLongStream<S> {
    fn advance(&mut self) -> bool {
        if !self.tail.advance() {
            return false;
        }
        let text = &mut self.tail.token_mut().text;
        if text.len() > MAX_TOKEN_BYTES {
            let mut end = MAX_TOKEN_BYTES;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
        }
        true
    }

    fn token(&self) -> &Token {
        self.tail.token()
    }

    fn token_mut(&mut self) -> &mut Token {
        self.tail.token_mut()
    }
}

/// Whole values (status, tag) compared without case or accents.
pub(crate) fn keyword_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(RawTokenizer::default())
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build()
}

/// Runs `analyzer` over `text` and returns the tokens.
pub(crate) fn analyze(analyzer: &mut TextAnalyzer, text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    analyzer
        .token_stream(text)
        .process(&mut |token| tokens.push(token.text.clone()));
    tokens
}

/// The term of two adjacent words in a pair field. Tokens never contain a space.
pub(crate) fn pair(first: &str, second: &str) -> String {
    let mut both = String::with_capacity(first.len() + 1 + second.len());
    both.push_str(first);
    both.push(' ');
    both.push_str(second);
    both
}

/// Pairs of adjacent words, one token each ("late payment"): the words of
/// [`text_analyzer`], joined by a space when they are adjacent. Words with a dropped
/// (overlong) word between them are not adjacent, as in a phrase query.
///
/// A tokenizer rather than pre-tokenized values: tantivy moves a pre-tokenized value to its
/// indexing thread as JSON, and writing and reading that JSON cost a tenth of an import's
/// CPU (perf, 200k messages).
#[derive(Clone)]
pub(crate) struct PairTokenizer {
    words: TextAnalyzer,
}

impl PairTokenizer {
    pub(crate) fn new() -> PairTokenizer {
        PairTokenizer {
            words: text_analyzer(),
        }
    }
}

impl Tokenizer for PairTokenizer {
    type TokenStream<'a> = PairStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> PairStream<'a> {
        PairStream {
            words: self.words.token_stream(text),
            previous: None,
            previous_text: String::new(),
            token: Token::default(),
        }
    }
}

pub(crate) struct PairStream<'a> {
    words: BoxTokenStream<'a>,
    /// Position and start offset of the previous word; its text is in `previous_text`.
    previous: Option<(usize, usize)>,
    previous_text: String,
    token: Token,
}

impl TokenStream for PairStream<'_> {
    fn advance(&mut self) -> bool {
        while self.words.advance() {
            let word = self.words.token();
            let adjacent = self
                .previous
                .filter(|(position, _)| position + 1 == word.position);
            if let Some((_, from)) = adjacent {
                // The first pair gets position 0 (a fresh token's position is usize::MAX).
                let position = self.token.position.wrapping_add(1);
                self.token.text.clear();
                self.token.text.push_str(&self.previous_text);
                self.token.text.push(' ');
                self.token.text.push_str(&word.text);
                self.token.offset_from = from;
                self.token.offset_to = word.offset_to;
                self.token.position = position;
                self.token.position_length = 1;
            }
            self.previous = Some((word.position, word.offset_from));
            self.previous_text.clear();
            self.previous_text.push_str(&word.text);
            if adjacent.is_some() {
                return true;
            }
        }
        false
    }

    fn token(&self) -> &Token {
        &self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.token
    }
}

pub(crate) fn tokenizers() -> TokenizerManager {
    let manager = TokenizerManager::default();
    manager.register(TEXT_ANALYZER, text_analyzer());
    manager.register(KEYWORD_ANALYZER, keyword_analyzer());
    manager.register(PAIR_ANALYZER, TextAnalyzer::from(PairTokenizer::new()));
    manager
}

/// Handles of our fields in [`schema`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fields {
    pub message_db_id: Field,
    pub ticket_number: Field,
    pub ticket_id: Field,
    pub date: Field,
    pub status: Field,
    pub tags: Field,
    pub has_attachment: Field,
    pub subject: Field,
    pub from: Field,
    pub to: Field,
    /// Subject, body, from and to together, with positions: bare words, and the check of
    /// longer phrases.
    pub all: Field,
    /// Adjacent word pairs of subject and body.
    pub pairs: Field,
    pub from_pairs: Field,
    pub to_pairs: Field,
}

/// The schema and its field handles. Nothing but the two ids is stored: hits are resolved
/// through fast fields and the text lives in the database.
pub(crate) fn schema() -> (Schema, Fields) {
    let text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(TEXT_ANALYZER)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    // Every word of subject, body, from and to in one field: a word query is then one
    // term query and an AND of words an intersection of term queries, the shapes tantivy
    // answers with block-max pruning instead of scoring every match (term queries read
    // frequencies only, never the positions). The positions verify longer phrases; each
    // value keeps its own positions (tantivy leaves a gap between values), so a phrase
    // never runs from the subject into the body. The body has no field of its own: a
    // third pass over every body word cost an import a tenth of its CPU.
    let all = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(TEXT_ANALYZER)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    // Pairs of adjacent words ("late payment"), one term each: a two-word phrase is then a
    // term query, and a longer one only verifies positions where all its pairs occur. A
    // phrase of common words otherwise reads the positions of most documents.
    let pairs = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(PAIR_ANALYZER)
            .set_index_option(IndexRecordOption::WithFreqs),
    );
    // Filters. Frequencies (always 1) make their term queries plain term scorers, so that a
    // word AND a filter still takes the pruned intersection; without field norms every
    // match scores the same, so filters do not change the ranking.
    let keyword = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(KEYWORD_ANALYZER)
            .set_index_option(IndexRecordOption::WithFreqs)
            .set_fieldnorms(false),
    );
    let mut b = Schema::builder();
    let fields = Fields {
        message_db_id: b.add_i64_field(MESSAGE_DB_ID, INDEXED | FAST | STORED),
        ticket_number: b.add_i64_field(TICKET_NUMBER, INDEXED | FAST | STORED),
        ticket_id: b.add_i64_field(TICKET_ID, FAST),
        // Seconds since the Unix epoch, UTC.
        date: b.add_i64_field(DATE, INDEXED | FAST),
        status: b.add_text_field("status", keyword.clone()),
        tags: b.add_text_field("tags", keyword),
        has_attachment: b.add_bool_field("has_attachment", INDEXED),
        subject: b.add_text_field("subject", text.clone()),
        from: b.add_text_field("from", text.clone()),
        to: b.add_text_field("to", text),
        all: b.add_text_field("all", all),
        pairs: b.add_text_field("pairs", pairs.clone()),
        from_pairs: b.add_text_field("from_pairs", pairs.clone()),
        to_pairs: b.add_text_field("to_pairs", pairs),
    };
    (b.build(), fields)
}

pub(crate) fn to_document(f: &Fields, doc: &SearchDoc) -> TantivyDocument {
    let mut d = TantivyDocument::default();
    d.add_i64(f.message_db_id, doc.message_db_id);
    d.add_i64(f.ticket_number, doc.ticket_number);
    d.add_i64(f.ticket_id, doc.ticket_id);
    d.add_i64(f.date, doc.date.timestamp());
    d.add_text(f.status, doc.status.trim());
    for tag in &doc.tags {
        d.add_text(f.tags, tag.trim());
    }
    d.add_bool(f.has_attachment, doc.has_attachment);
    d.add_text(f.subject, &doc.subject);
    d.add_text(f.from, &doc.from);
    d.add_text(f.to, &doc.to);
    for text in [&doc.subject, &doc.body, &doc.from, &doc.to] {
        d.add_text(f.all, text);
    }
    for (field, text) in [
        (f.pairs, &doc.subject),
        (f.pairs, &doc.body),
        (f.from_pairs, &doc.from),
        (f.to_pairs, &doc.to),
    ] {
        d.add_text(field, text);
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_split_into_parts_and_accents_fold() {
        let mut a = text_analyzer();
        assert_eq!(
            analyze(&mut a, "Alice Ünal <Alice.Unal@Example.COM>"),
            ["alice", "unal", "alice", "unal", "example", "com"]
        );
        assert_eq!(analyze(&mut a, "Café"), ["cafe"]);
    }

    #[test]
    fn long_words_are_cut_at_a_character_boundary() {
        let mut a = text_analyzer();
        let long = "A".repeat(MAX_TOKEN_BYTES + 10);
        assert_eq!(analyze(&mut a, &long), ["a".repeat(MAX_TOKEN_BYTES)]);
        // 22 three-byte characters are 66 bytes: 21 of them fit.
        let cjk = "\u{4e2d}".repeat(22);
        assert_eq!(analyze(&mut a, &cjk), ["\u{4e2d}".repeat(21)]);
    }

    #[test]
    fn pairs_join_adjacent_words_only() {
        let long = "x".repeat(MAX_TOKEN_BYTES + 1);
        let cut = "x".repeat(MAX_TOKEN_BYTES);
        let text = format!("Late payment, {long} again");
        let mut pairs = TextAnalyzer::from(PairTokenizer::new());
        assert_eq!(
            analyze(&mut pairs, &text),
            [
                "late payment".to_string(),
                format!("payment {cut}"),
                format!("{cut} again")
            ]
        );
        let mut positions = Vec::new();
        pairs
            .token_stream("one two three, four")
            .process(&mut |t| positions.push((t.text.clone(), t.position)));
        assert_eq!(
            positions,
            [
                ("one two".to_string(), 0),
                ("two three".to_string(), 1),
                ("three four".to_string(), 2)
            ]
        );
    }

    #[test]
    fn keywords_stay_whole() {
        assert_eq!(
            analyze(&mut keyword_analyzer(), "Needs Réview"),
            ["needs review"]
        );
    }
}
