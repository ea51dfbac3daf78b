//! Opening, reopening and schema checks of on-disk indexes.

use crate::fixtures::{corpus, id_set, HEAP};
use qd_search::{Error, SearchIndex};
use tantivy::schema::{Schema, STORED, TEXT};

#[test]
fn search_index_can_be_shared_between_threads() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<SearchIndex>();
}

#[test]
fn open_or_create_creates_the_directory_and_reopens_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nested/index");
    let index = SearchIndex::open_or_create(&dir).unwrap();
    let mut w = index.writer(HEAP, 1).unwrap();
    for d in corpus() {
        w.add(&d).unwrap();
    }
    w.commit().unwrap();
    drop(w);
    drop(index);

    let index = SearchIndex::open_or_create(&dir).unwrap();
    assert_eq!(index.num_docs().unwrap(), 12);
    assert_eq!(id_set(&index, "from:alice"), [1]);
}

#[test]
fn an_index_with_another_schema_is_a_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    // What an older version that stored the body might have left behind.
    let mut b = Schema::builder();
    b.add_text_field("body", TEXT | STORED);
    tantivy::Index::create_in_dir(dir.path(), b.build()).unwrap();

    match SearchIndex::open_or_create(dir.path()) {
        Err(Error::SchemaMismatch { reason, .. }) => {
            assert!(reason.contains("body"), "{reason}");
            assert!(reason.contains("message_db_id"), "{reason}");
        }
        other => panic!("expected a schema mismatch, got {other:?}"),
    }
}

#[test]
fn a_second_writer_is_refused_while_one_is_open() {
    let index = SearchIndex::create_in_ram().unwrap();
    let _w = index.writer(HEAP, 1).unwrap();
    assert!(matches!(index.writer(HEAP, 1), Err(Error::Index(_))));
}

#[test]
fn zero_threads_means_one() {
    let index = SearchIndex::create_in_ram().unwrap();
    let mut w = index.writer(HEAP, 0).unwrap();
    w.add(&corpus()[0]).unwrap();
    w.commit().unwrap();
    assert_eq!(index.num_docs().unwrap(), 1);
}
