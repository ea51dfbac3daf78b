//! A parsed [`Query`] as a tantivy query.
//!
//! Shapes are chosen so that tantivy's fast paths apply: a word is one term query on the
//! `all` field, a two-word phrase one term query on a pair field, a lone clause is not
//! wrapped in a boolean query, and an AND of words and keyword filters is an intersection of
//! term queries with frequencies. Tantivy prunes such a single term (block-WAND) or
//! intersection (block-max) instead of scoring every matching document.

use std::ops::Bound;

use tantivy::query::{
    AllQuery, BooleanQuery, EmptyQuery, EnableScoring, Explanation, Occur, PhraseQuery,
    Query as TantivyQuery, RangeQuery, Scorer, TermQuery, Weight,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{DocId, DocSet, Score, SeekDangerResult, SegmentReader, Term};

use crate::query::{Atom, Clause, Query, Scope};
use crate::schema::{pair, Fields};

pub(crate) fn compile(query: &Query, f: &Fields) -> Box<dyn TantivyQuery> {
    let mut must: Vec<Box<dyn TantivyQuery>> = Vec::new();
    let mut must_not: Vec<Box<dyn TantivyQuery>> = Vec::new();
    for clause in &query.clauses {
        match clause {
            Clause::Require(atoms) => {
                must.push(any_of(atoms.iter().map(|a| atom_query(a, f)).collect()));
            }
            Clause::Exclude(atom @ Atom::Text { tokens, .. }) if tokens.len() > 1 => {
                must_not.push(Box::new(ForwardOnly(atom_query(atom, f))));
            }
            Clause::Exclude(atom) => must_not.push(atom_query(atom, f)),
        }
    }
    if must_not.is_empty() && must.len() == 1 {
        if let Some(only) = must.pop() {
            return only;
        }
    }
    if must.is_empty() {
        // Tantivy matches nothing with only MUST_NOT clauses; staff mean "all but these".
        must.push(Box::new(AllQuery));
    }
    let clauses = must
        .into_iter()
        .map(|q| (Occur::Must, q))
        .chain(must_not.into_iter().map(|q| (Occur::MustNot, q)))
        .collect();
    Box::new(BooleanQuery::new(clauses))
}

fn atom_query(atom: &Atom, f: &Fields) -> Box<dyn TantivyQuery> {
    match atom {
        Atom::Text { scope, tokens } => text_atom(f, *scope, tokens),
        Atom::Status(status) => freqs(Term::from_field_text(f.status, status.as_str())),
        Atom::Ticket(n) => basic(Term::from_field_i64(f.ticket_number, *n)),
        Atom::Before(ts) => Box::new(RangeQuery::new(
            Bound::Unbounded,
            Bound::Excluded(Term::from_field_i64(f.date, *ts)),
        )),
        Atom::After(ts) => Box::new(RangeQuery::new(
            Bound::Included(Term::from_field_i64(f.date, *ts)),
            Bound::Unbounded,
        )),
        Atom::HasAttachment => basic(Term::from_field_bool(f.has_attachment, true)),
        Atom::Tag(tag) => freqs(Term::from_field_text(f.tags, tag)),
    }
}

/// The union of `queries`, unwrapped when there is only one.
fn any_of(mut queries: Vec<Box<dyn TantivyQuery>>) -> Box<dyn TantivyQuery> {
    if queries.len() == 1 {
        if let Some(only) = queries.pop() {
            return only;
        }
    }
    Box::new(BooleanQuery::union(queries))
}

fn text_atom(f: &Fields, scope: Scope, tokens: &[String]) -> Box<dyn TantivyQuery> {
    match tokens {
        // The parser never builds an atom without tokens.
        [] => Box::new(EmptyQuery),
        [token] => {
            let fields: &[Field] = match scope {
                // The body has no field of its own (see `schema`): a quoted word is
                // looked for wherever a bare one is.
                Scope::Anywhere | Scope::SubjectOrBody => &[f.all],
                Scope::Subject => &[f.subject],
                Scope::From => &[f.from],
                Scope::To => &[f.to],
            };
            any_of(
                fields
                    .iter()
                    .map(|&field| freqs(Term::from_field_text(field, token)))
                    .collect(),
            )
        }
        _ => {
            let from = || phrase_in(f.from, f.from_pairs, tokens, true);
            let to = || phrase_in(f.to, f.to_pairs, tokens, true);
            match scope {
                Scope::Anywhere => any_of(vec![subject_or_body_phrase(f, tokens), from(), to()]),
                Scope::SubjectOrBody => subject_or_body_phrase(f, tokens),
                Scope::Subject => phrase_in(f.subject, f.pairs, tokens, false),
                Scope::From => from(),
                Scope::To => to(),
            }
        }
    }
}

/// A phrase of two or more `tokens` in the subject or the body.
fn subject_or_body_phrase(f: &Fields, tokens: &[String]) -> Box<dyn TantivyQuery> {
    if let [first, second] = tokens {
        // The pair field holds exactly the adjacent pairs of subject and body.
        return freqs(Term::from_field_text(f.pairs, &pair(first, second)));
    }
    // The pairs are those of subject and body only, and `all` keeps each value's
    // positions apart, so the phrase is verified in `all` without crossing fields.
    phrase_in(f.all, f.pairs, tokens, false)
}

/// A phrase of two or more `tokens` in `field`: the documents holding all its word pairs in
/// `pair_field`, verified by positions unless `pair_field` holds the pairs of `field` alone
/// and the phrase is one pair. The pair terms are cheap and rare next to the single words,
/// so the phrase scorer only checks positions where the phrase probably is.
fn phrase_in(
    field: Field,
    pair_field: Field,
    tokens: &[String],
    pair_field_is_field_own: bool,
) -> Box<dyn TantivyQuery> {
    let mut parts: Vec<Box<dyn TantivyQuery>> = tokens
        .windows(2)
        .map(|w| freqs(Term::from_field_text(pair_field, &pair(&w[0], &w[1]))))
        .collect();
    if pair_field_is_field_own && parts.len() == 1 {
        return any_of(parts);
    }
    parts.push(Box::new(PhraseQuery::new(
        tokens
            .iter()
            .map(|t| Term::from_field_text(field, t))
            .collect(),
    )));
    Box::new(BooleanQuery::intersection(parts))
}

/// Reading frequencies is what makes a term scorer eligible for block-max pruning.
fn freqs(term: Term) -> Box<dyn TantivyQuery> {
    Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs))
}

/// For numeric and bool fields, which are indexed without frequencies.
fn basic(term: Term) -> Box<dyn TantivyQuery> {
    Box::new(TermQuery::new(term, IndexRecordOption::Basic))
}

/// Shields a phrase query used as an exclusion from probes behind its current document.
///
/// Tantivy 0.27's `PhraseScorer::seek_danger` debug-asserts `target >= doc()` (tantivy issue
/// #2811), but `Exclude` probes the exclusion with the first candidate of the including side,
/// which may lie before the phrase's first match: `payment -"late payment"` panics in debug
/// builds. Below the current document the answer is known anyway: not a match.
#[derive(Debug)]
struct ForwardOnly(Box<dyn TantivyQuery>);

impl Clone for ForwardOnly {
    fn clone(&self) -> Self {
        ForwardOnly(self.0.box_clone())
    }
}

impl TantivyQuery for ForwardOnly {
    fn weight(&self, enable_scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(ForwardOnlyWeight(self.0.weight(enable_scoring)?)))
    }

    fn query_terms<'a>(&'a self, visitor: &mut dyn FnMut(&'a Term, bool)) {
        self.0.query_terms(visitor);
    }
}

struct ForwardOnlyWeight(Box<dyn Weight>);

impl Weight for ForwardOnlyWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        Ok(Box::new(ForwardOnlyScorer(self.0.scorer(reader, boost)?)))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        self.0.explain(reader, doc)
    }
}

struct ForwardOnlyScorer(Box<dyn Scorer>);

impl DocSet for ForwardOnlyScorer {
    fn advance(&mut self) -> DocId {
        self.0.advance()
    }

    fn seek(&mut self, target: DocId) -> DocId {
        let doc = self.0.doc();
        if target <= doc {
            return doc;
        }
        self.0.seek(target)
    }

    fn seek_danger(&mut self, target: DocId) -> SeekDangerResult {
        if target < self.0.doc() {
            return SeekDangerResult::SeekLowerBound(target + 1);
        }
        self.0.seek_danger(target)
    }

    fn doc(&self) -> DocId {
        self.0.doc()
    }

    fn size_hint(&self) -> u32 {
        self.0.size_hint()
    }

    fn cost(&self) -> u64 {
        self.0.cost()
    }
}

impl Scorer for ForwardOnlyScorer {
    fn score(&mut self) -> Score {
        self.0.score()
    }
}
