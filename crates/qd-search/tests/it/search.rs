//! Search behaviour over the synthetic corpus.

use crate::fixtures::{at, corpus, doc, id_set, ids, indexed, q, HEAP};
use qd_search::{SearchIndex, SearchWriter};

fn all_but(excluded: &[i64]) -> Vec<i64> {
    (1..=12).filter(|i| !excluded.contains(i)).collect()
}

#[test]
fn every_word_must_match_somewhere() {
    let index = indexed(&corpus());
    assert_eq!(id_set(&index, "invoice payment"), [1, 2]);
    assert_eq!(id_set(&index, "INVOICE"), [1, 2]);
    assert_eq!(id_set(&index, "payment"), [1, 2, 3, 4, 6]);
    // Words are also looked up in the addresses.
    assert_eq!(id_set(&index, "alice smith"), [1]);
    assert_eq!(id_set(&index, "invoice nonexistentword"), Vec::<i64>::new());
}

#[test]
fn a_phrase_needs_adjacent_words_in_subject_or_body() {
    let index = indexed(&corpus());
    assert_eq!(id_set(&index, "\"late payment\""), [3]);
    assert_eq!(id_set(&index, "late payment"), [3, 4]);
    assert_eq!(id_set(&index, "\"invoice for march\""), [1, 2]);
    assert_eq!(id_set(&index, "\"alice smith\""), Vec::<i64>::new());
}

#[test]
fn longer_phrases_are_verified_by_position() {
    let index = indexed(&corpus());
    assert_eq!(id_set(&index, "\"payment was late\""), [4]);
    assert_eq!(id_set(&index, "\"was late payment\""), Vec::<i64>::new());
    // Every pair occurs in message 4, but not as one run: "late because the bank".
    assert_eq!(id_set(&index, "\"the payment was late because\""), [4]);
    assert_eq!(
        id_set(&index, "\"payment was late bank\""),
        Vec::<i64>::new()
    );
    assert_eq!(id_set(&index, "subject:\"invoice for march\""), [1, 2]);
    assert_eq!(
        id_set(&index, "subject:\"late payment\""),
        Vec::<i64>::new()
    );
    // A phrase does not run from the subject into the body.
    assert_eq!(id_set(&index, "\"march please\""), Vec::<i64>::new());
    assert_eq!(id_set(&index, "\"march please find\""), Vec::<i64>::new());
    assert_eq!(id_set(&index, "to:\"cc person\""), [7]);
}

#[test]
fn accents_and_case_fold() {
    let index = indexed(&corpus());
    assert_eq!(id_set(&index, "cafe"), [5]);
    assert_eq!(id_set(&index, "CAFÉ"), [5]);
    assert_eq!(id_set(&index, "dorte"), [5]);
    assert_eq!(id_set(&index, "from:Dörte"), [5]);
}

#[test]
fn address_filters_match_whole_and_partial_addresses() {
    let index = indexed(&corpus());
    assert_eq!(id_set(&index, "from:alice@example.com"), [1]);
    assert_eq!(id_set(&index, "from:ALICE"), [1]);
    assert_eq!(id_set(&index, "from:\"Alice Smith\""), [1]);
    assert_eq!(id_set(&index, "from:example.com"), [1, 7]);
    assert_eq!(id_set(&index, "from:bob@example.com"), Vec::<i64>::new());
    assert_eq!(id_set(&index, "to:alice"), [2]);
    assert_eq!(id_set(&index, "to:cc-person@example.net"), [7]);
    assert_eq!(id_set(&index, "to:frank"), [10]);
}

#[test]
fn subject_filter() {
    let index = indexed(&corpus());
    assert_eq!(id_set(&index, "subject:invoice"), [1, 2]);
    assert_eq!(id_set(&index, "subject:payment"), [4]);
    assert_eq!(id_set(&index, "subject:\"for march\""), [1, 2]);
    assert_eq!(id_set(&index, "subject:\"march for\""), Vec::<i64>::new());
}

#[test]
fn status_ticket_tag_and_attachment_filters() {
    let index = indexed(&corpus());
    assert_eq!(id_set(&index, "status:pending"), [3, 7, 12]);
    assert_eq!(id_set(&index, "status:CLOSED"), [4, 6, 11]);
    assert_eq!(id_set(&index, "ticket:1234"), [7]);
    assert_eq!(id_set(&index, "ticket:#QD-1234"), [7]);
    assert_eq!(id_set(&index, "ticket:101"), [1, 2]);
    assert_eq!(id_set(&index, "tag:billing"), [1, 2, 9, 10]);
    assert_eq!(id_set(&index, "tag:Refund"), [9, 10]);
    assert_eq!(id_set(&index, "tag:\"needs review\""), [5]);
    assert_eq!(id_set(&index, "has:attachment"), [1, 4, 9, 12]);
    assert_eq!(id_set(&index, "has:attachment payment"), [1, 4]);

    let hit = index.search(&q("ticket:1234"), 10).unwrap();
    assert_eq!((hit[0].message_db_id, hit[0].ticket_number), (7, 1234));
}

#[test]
fn before_is_exclusive_and_after_inclusive() {
    let index = indexed(&corpus());
    // Message 3 is dated 2024-02-29 23:59:59, message 5 2024-03-01 00:00:00 (UTC).
    assert_eq!(id_set(&index, "before:2024-03-01"), [3, 4, 6, 11, 12]);
    assert_eq!(id_set(&index, "after:2024-03-01"), [1, 2, 5, 7, 8, 9, 10]);
    assert_eq!(id_set(&index, "after:2024-03-01 before:2024-03-02"), [1, 5]);
    assert_eq!(id_set(&index, "after:2024-02-29 before:2024-03-01"), [3]);
}

#[test]
fn minus_excludes_words_phrases_and_filters() {
    let index = indexed(&corpus());
    assert_eq!(id_set(&index, "payment -late"), [1, 2, 6]);
    assert_eq!(id_set(&index, "payment -\"late payment\""), [1, 2, 4, 6]);
    assert_eq!(id_set(&index, "payment -status:closed"), [1, 2, 3]);
    // Only exclusions: everything else.
    assert_eq!(id_set(&index, "-status:closed"), all_but(&[4, 6, 11]));
}

// Regression: tantivy 0.27 asserted when an excluded phrase was probed before its first match.
#[test]
fn phrases_combine_with_words_or_and_exclusion() {
    let index = indexed(&corpus());
    assert_eq!(id_set(&index, "payment \"payment was\""), [2, 4]);
    assert_eq!(id_set(&index, "\"late payment\" OR refund"), [3, 9, 10]);
    assert_eq!(
        id_set(&index, "-\"payment was\" status:open"),
        [1, 5, 8, 9, 10]
    );
    assert_eq!(id_set(&index, "-\"invoice for march\""), all_but(&[1, 2]));
    assert_eq!(
        id_set(&index, "-\"invoice for march\" -\"payment was\" payment"),
        [3, 6]
    );
    assert_eq!(id_set(&index, "-from:alice@example.com invoice"), [2]);
}

#[test]
fn or_makes_a_disjunction() {
    let index = indexed(&corpus());
    assert_eq!(id_set(&index, "refund OR shipping"), [8, 9, 10]);
    assert_eq!(id_set(&index, "status:closed OR tag:legal"), [4, 6, 11, 12]);
    assert_eq!(id_set(&index, "payment late OR refund"), [3, 4]);
}

#[test]
fn filter_only_queries_come_newest_first() {
    let index = indexed(&corpus());
    assert_eq!(ids(&index, "status:open"), [10, 9, 8, 2, 1, 5]);
    assert_eq!(ids(&index, "from:example.com"), [7, 1]);
    let hits = index.search(&q("status:open"), 2).unwrap();
    assert_eq!(hits.len(), 2);
    assert!(hits.iter().all(|h| h.score == 0.0));
    // Blank input lists everything, newest first.
    let all = ids(&index, "  ");
    assert_eq!(all.len(), 12);
    assert_eq!(all[..2], [7, 10]);
    assert_eq!(all[11], 11);
}

#[test]
fn free_text_is_ranked_by_score() {
    let index = indexed(&corpus());
    let hits = index.search(&q("payment status:closed"), 10).unwrap();
    assert_eq!(hits.len(), 2);
    assert!(hits[0].score >= hits[1].score && hits[1].score > 0.0);
    // Shorter field wins: "payment" in the subject of 4 beats a mention in a long body.
    assert_eq!(ids(&index, "payment")[0], 4);
}

#[test]
fn limit_caps_hits_and_zero_is_allowed() {
    let index = indexed(&corpus());
    assert_eq!(index.search(&q("payment"), 3).unwrap().len(), 3);
    assert!(index.search(&q("payment"), 0).unwrap().is_empty());
    assert_eq!(index.search(&q("payment"), usize::MAX).unwrap().len(), 5);
    let empty = SearchIndex::create_in_ram().unwrap();
    assert!(empty.search(&q("payment"), 10).unwrap().is_empty());
}

fn writer(index: &SearchIndex) -> SearchWriter {
    index.writer(HEAP, 1).unwrap()
}

#[test]
fn upsert_replaces_instead_of_duplicating() {
    let index = indexed(&corpus());
    let mut w = writer(&index);
    let mut changed = corpus().remove(0);
    changed.subject = "Invoice for April".into();
    w.upsert(&changed).unwrap();
    w.upsert(&changed).unwrap();
    w.commit().unwrap();
    w.upsert(&changed).unwrap();
    w.commit().unwrap();
    assert_eq!(index.num_docs().unwrap(), 12);
    assert_eq!(id_set(&index, "april"), [1]);
    assert_eq!(id_set(&index, "subject:march"), [2]);

    // Upserting a message the index has never seen adds it.
    let new = doc(
        13,
        110,
        "Brand new",
        "",
        "x@y.example",
        "",
        "open",
        at(2024, 4, 1, 0, 0, 0),
        &[],
        false,
    );
    w.upsert(&new).unwrap();
    w.commit().unwrap();
    assert_eq!(index.num_docs().unwrap(), 13);
}

#[test]
fn delete_removes_from_results() {
    let index = indexed(&corpus());
    let mut w = writer(&index);
    w.delete(3).unwrap();
    w.delete(999).unwrap();
    w.commit().unwrap();
    assert_eq!(id_set(&index, "\"late payment\""), Vec::<i64>::new());
    assert_eq!(id_set(&index, "status:pending"), [7, 12]);
    assert_eq!(index.num_docs().unwrap(), 11);
    // Still on disk as a tombstone until a merge.
    assert_eq!(index.deleted_docs().unwrap(), 1);
}

#[test]
fn delete_all_empties_the_index_for_a_rebuild() {
    let index = indexed(&corpus());
    let mut w = writer(&index);
    w.delete_all().unwrap();
    w.commit().unwrap();
    assert_eq!(index.num_docs().unwrap(), 0);
    assert!(ids(&index, "payment").is_empty());

    // The rebuild pattern: clear and re-add in one commit.
    w.delete_all().unwrap();
    for d in corpus().iter().take(3) {
        w.add(d).unwrap();
    }
    w.commit().unwrap();
    assert_eq!(index.num_docs().unwrap(), 3);
    assert_eq!(index.deleted_docs().unwrap(), 0);
}

#[test]
fn uncommitted_changes_are_invisible() {
    let index = indexed(&corpus());
    let mut w = writer(&index);
    w.delete(1).unwrap();
    index.reload().unwrap();
    assert_eq!(id_set(&index, "subject:invoice"), [1, 2]);
    w.commit().unwrap();
    assert_eq!(id_set(&index, "subject:invoice"), [2]);
}

/// Newest-first search looks at the newest slice of the date range first; over a corpus
/// spread across years and sparse filters it must still return exactly the newest matches.
#[test]
fn newest_first_is_exact_over_a_long_date_range() {
    let start = at(2014, 1, 1, 0, 0, 0).timestamp();
    let docs: Vec<_> = (0..600_i64)
        .map(|i| {
            // Uneven spacing: a dense recent burst and a long sparse past.
            let offset = if i < 500 {
                i * 86_400 * 7
            } else {
                500 * 86_400 * 7 + (i - 500) * 60
            };
            let date = chrono::DateTime::from_timestamp(start + offset, 0).unwrap();
            let status = if i % 97 == 0 { "pending" } else { "open" };
            let tags: &[&str] = if i % 150 == 3 { &["rare"] } else { &[] };
            doc(
                i + 1,
                i + 1,
                "s",
                "b",
                "a@b.example",
                "",
                status,
                date,
                tags,
                false,
            )
        })
        .collect();
    let index = indexed(&docs);
    let expect = |keep: &dyn Fn(i64) -> bool, n: usize| -> Vec<i64> {
        (1..=600).rev().filter(|&id| keep(id - 1)).take(n).collect()
    };
    assert_eq!(ids(&index, "status:pending"), expect(&|i| i % 97 == 0, 100));
    assert_eq!(index.search(&q("status:open"), 5).unwrap().len(), 5);
    assert_eq!(
        index
            .search(&q("status:open"), 5)
            .unwrap()
            .iter()
            .map(|h| h.message_db_id)
            .collect::<Vec<_>>(),
        expect(&|i| i % 97 != 0, 5)
    );
    assert_eq!(ids(&index, "tag:rare"), expect(&|i| i % 150 == 3, 100));
    let before = at(2020, 1, 1, 0, 0, 0).timestamp() - start;
    let hits: Vec<i64> = index
        .search(&q("status:open before:2020-01-01"), 3)
        .unwrap()
        .iter()
        .map(|h| h.message_db_id)
        .collect();
    assert_eq!(
        hits,
        expect(&|i| i % 97 != 0 && i * 86_400 * 7 < before && i < 500, 3)
    );
    assert!(ids(&index, "after:2030-01-01").is_empty());
    assert!(ids(&index, "after:2020-01-01 before:2019-01-01").is_empty());
}

/// A word longer than the index keeps (64 bytes: a hash, a long identifier) is found by
/// itself and inside a phrase; another long word is not, and a query of one never matches
/// everything.
#[test]
fn long_words_are_found_whole_and_in_phrases() {
    let hash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08aa";
    assert!(hash.len() > 64);
    let mut docs = corpus();
    docs.push(doc(
        13,
        13,
        "Order lookup",
        &format!("order {hash} shipped yesterday"),
        "kim@example.org",
        "support@quietdesk.test",
        "open",
        at(2024, 5, 1, 9, 0, 0),
        &[],
        false,
    ));
    let index = indexed(&docs);
    assert_eq!(id_set(&index, hash), [13]);
    assert_eq!(id_set(&index, &hash.to_uppercase()), [13]);
    assert_eq!(id_set(&index, &format!("\"order {hash} shipped\"")), [13]);
    let other = "0".repeat(70);
    assert_eq!(id_set(&index, &other), Vec::<i64>::new());
    assert_eq!(id_set(&index, &format!("order {other}")), Vec::<i64>::new());
}
