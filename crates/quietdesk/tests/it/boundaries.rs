//! The dependency directions of ARCHITECTURE.md, held mechanically: which of our crates
//! may name which library, and which of our crates may use which. Reads
//! `cargo metadata --no-deps` (direct dependencies as declared).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

fn direct_dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut map = BTreeMap::new();
    for p in meta["packages"].as_array().unwrap() {
        let deps = p["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            // Dev-dependencies (kind "dev") are test-only and exempt.
            .filter(|d| d["kind"].is_null())
            .map(|d| d["name"].as_str().unwrap().to_string())
            .collect();
        map.insert(p["name"].as_str().unwrap().to_string(), deps);
    }
    map
}

#[test]
fn only_the_owning_crate_names_each_library() {
    let deps = direct_dependencies();
    let owners: &[(&str, &[&str])] = &[
        ("sea-orm", &["qd-store", "qd-testkit"]),
        ("sea-orm-migration", &["migration"]),
        ("tantivy", &["qd-search"]),
        ("axum", &["qd-web"]),
        ("mail-parser", &["qd-mail"]),
        ("clap", &["quietdesk"]),
        ("figment", &["quietdesk"]),
        ("anyhow", &["quietdesk"]),
        ("async-imap", &["qd-ingest"]),
        ("lettre", &["qd-outbound"]),
        ("mail-auth", &["qd-filter", "qd-testkit"]),
        ("zip", &["qd-retention"]),
    ];
    for (lib, allowed) in owners {
        let users: Vec<&String> = deps
            .iter()
            .filter(|(_, d)| d.contains(*lib))
            .map(|(name, _)| name)
            .collect();
        for u in users {
            assert!(
                allowed.contains(&u.as_str()),
                "{u} depends on {lib}; only {allowed:?} may"
            );
        }
    }
}

#[test]
fn our_crates_depend_only_in_the_documented_directions() {
    let deps = direct_dependencies();
    let may_use: &[(&str, &[&str])] = &[
        ("qd-core", &[]),
        ("qd-mail", &["qd-core"]),
        ("migration", &["qd-core"]),
        ("qd-store", &["qd-core", "migration"]),
        ("qd-search", &["qd-core", "qd-store"]),
        (
            "qd-ingest",
            &["qd-core", "qd-mail", "qd-store", "qd-filter"],
        ),
        ("qd-filter", &["qd-core", "qd-mail"]),
        ("qd-outbound", &["qd-core", "qd-mail", "qd-store"]),
        ("qd-retention", &["qd-core", "qd-store"]),
        ("qd-web", &["qd-core", "qd-store", "qd-search"]),
        ("qd-synth", &[]),
        ("qd-testkit", &[]),
    ];
    let ours: BTreeSet<&str> = deps.keys().map(String::as_str).collect();
    for (krate, allowed) in may_use {
        let Some(actual) = deps.get(*krate) else {
            panic!("crate {krate} is missing from the workspace");
        };
        for d in actual.iter().filter(|d| ours.contains(d.as_str())) {
            assert!(
                allowed.contains(&d.as_str()),
                "{krate} depends on {d}, which ARCHITECTURE.md does not allow"
            );
        }
    }
    // No library crate may use the binary or the test kit.
    for (krate, actual) in &deps {
        assert!(
            !actual.contains("quietdesk"),
            "{krate} depends on the binary"
        );
        if krate != "quietdesk" {
            assert!(
                !actual.contains("qd-testkit"),
                "{krate} uses qd-testkit outside tests"
            );
        }
    }
    assert!(!deps["quietdesk"].contains("qd-testkit"));
}
