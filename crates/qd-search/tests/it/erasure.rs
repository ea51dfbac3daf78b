//! Erasure is physical: after a merge no deleted document is left in any file.
//!
//! Tantivy's term dictionary is an FST whose transitions are packed, so a term's bytes never
//! appear verbatim in a file and grepping the directory proves nothing. The proof is instead:
//! every file that existed when the secret was indexed is gone, and the dictionary of what
//! is left (read with tantivy itself) has no such term.

use std::collections::BTreeSet;
use std::path::Path;

use crate::fixtures::{corpus, id_set, HEAP};
use qd_search::SearchIndex;
use tantivy::Term;

const SECRET: &str = "zanzibarquuxfrobnicate";

/// Segment ids (the file stems before the first dot) of the files in `dir`.
fn segment_ids(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter_map(|name| {
            let stem = name.split('.').next()?;
            (stem.len() == 32 && stem.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| stem.to_string())
        })
        .collect()
}

/// How many segments on disk have `SECRET` in the term dictionary of the field that holds
/// every word of the body.
fn segments_knowing_the_secret(dir: &Path) -> usize {
    let index = tantivy::Index::open_in_dir(dir).unwrap();
    let field = index.schema().get_field("all").unwrap();
    let searcher = index.reader().unwrap().searcher();
    searcher
        .segment_readers()
        .iter()
        .filter(|s| {
            s.inverted_index(field)
                .unwrap()
                .get_term_info(&Term::from_field_text(field, SECRET))
                .unwrap()
                .is_some()
        })
        .count()
}

#[test]
fn merge_away_deleted_leaves_no_deleted_document_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let index = SearchIndex::open_or_create(dir.path()).unwrap();
    let mut docs = corpus();
    docs[2].body = format!("{SECRET} is the password");

    // Two commits, two segments: the merge has to combine them as well.
    let mut w = index.writer(HEAP, 1).unwrap();
    for d in &docs[..6] {
        w.add(d).unwrap();
    }
    w.commit().unwrap();
    for d in &docs[6..] {
        w.add(d).unwrap();
    }
    w.commit().unwrap();
    assert_eq!(id_set(&index, SECRET), [3]);
    assert_eq!(segments_knowing_the_secret(dir.path()), 1);

    w.delete(3).unwrap();
    w.commit().unwrap();
    assert!(id_set(&index, SECRET).is_empty());
    assert_eq!(index.deleted_docs().unwrap(), 1);
    // A plain delete only marks the document.
    assert_eq!(segments_knowing_the_secret(dir.path()), 1);
    let before = segment_ids(dir.path());
    assert_eq!(before.len(), 2);

    w.merge_away_deleted().unwrap();
    assert_eq!(index.deleted_docs().unwrap(), 0);
    assert_eq!(index.num_docs().unwrap(), 11);
    let after = segment_ids(dir.path());
    // Only the segment that held the deleted document is rewritten (its files are gone);
    // the other one is left as it was.
    assert_eq!(after.len(), 2, "{after:?}");
    assert_eq!(
        before.difference(&after).count(),
        1,
        "the old files of the rewritten segment survive: {after:?}"
    );
    assert_eq!(segments_knowing_the_secret(dir.path()), 0);

    // The merged index reopens and still answers.
    drop(index);
    let reopened = SearchIndex::open_or_create(dir.path()).unwrap();
    assert_eq!(reopened.num_docs().unwrap(), 11);
    assert_eq!(id_set(&reopened, "\"invoice for march\""), [1, 2]);
    // The merge released the writer lock.
    reopened.writer(HEAP, 1).unwrap();
}

#[test]
fn merge_away_deleted_on_a_clean_or_empty_index_is_harmless() {
    let dir = tempfile::tempdir().unwrap();
    let index = SearchIndex::open_or_create(dir.path()).unwrap();
    index.writer(HEAP, 2).unwrap().merge_away_deleted().unwrap();
    assert_eq!(index.num_docs().unwrap(), 0);

    let mut w = index.writer(HEAP, 2).unwrap();
    for d in corpus() {
        w.add(&d).unwrap();
    }
    w.merge_away_deleted().unwrap();
    assert_eq!(index.num_docs().unwrap(), 12);
    assert_eq!(index.deleted_docs().unwrap(), 0);

    // Deleting everything leaves no segment at all.
    let mut w = index.writer(HEAP, 1).unwrap();
    for d in corpus() {
        w.delete(d.message_db_id).unwrap();
    }
    w.merge_away_deleted().unwrap();
    assert_eq!(
        (index.num_docs().unwrap(), index.deleted_docs().unwrap()),
        (0, 0)
    );
    assert!(segment_ids(dir.path()).is_empty());
}
