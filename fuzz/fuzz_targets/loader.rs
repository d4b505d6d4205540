//! The bytes as a manifest file of `pitrguard validate`, once named `.json` and once `.yaml`,
//! through the loader (`load`): multi-document YAML, JSON, `kind: List`, and the streaming
//! readers of a List (`json_list.rs`, `yaml_list.rs`, which take over when the file looks like
//! a List).
//!
//! - What a file streams (`read_documents`) is what the same text parsed whole gives
//!   (`parse_text`): the same documents with the same origins, or an error for both.
//! - Every error names the file, and, for a file that is UTF-8, the document.
//! - `load_every_part` (one reader, decoders on every core, folded in input order) keeps what
//!   the sequential path keeps: the same number of documents, the same OpsRequests in order, an
//!   index with the same Backups, ActionSets and Clusters as `build_index`; it fails exactly
//!   when reading or indexing fails.
//! - `load`, which skips the parts of a Backup the index does not read, takes every file that
//!   `load_every_part` takes, with the same result.
//!
//! The files live in a directory of this process under `$TMPDIR` (hack/fuzz.sh points TMPDIR
//! at a directory it removes afterwards).

#![no_main]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pitrguard::core::Inventory;
use pitrguard::load::{self, Document, Kind, LoadError};
use serde_json::Value;

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("pitrguard-fuzz-loader-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory for the input files");
        dir
    })
}

fn names_the_file(e: &LoadError, name: &str, utf8: bool) {
    assert!(e.place.starts_with(name), "the error does not name the file: {e}");
    if utf8 {
        assert!(e.place.contains(": document "), "the error does not name the document: {e}");
    }
    assert!(!e.message.is_empty(), "{e}");
}

fn namespace_of(doc: &Document) -> String {
    let ns = doc.value.pointer("/metadata/namespace").and_then(Value::as_str);
    ns.unwrap_or(load::DEFAULT_NAMESPACE).to_string()
}

/// Everything an index holds about the namespaces of `docs`.
fn contents(index: &pitrguard::core::Index, docs: &[Document]) -> Vec<String> {
    let namespaces: BTreeSet<String> = docs.iter().map(namespace_of).collect();
    let mut out = vec![format!("{:?}", index.counts())];
    for ns in &namespaces {
        let mut backups = Vec::new();
        index.for_each_backup_in(ns, &mut |b| backups.push(format!("{b:?}")));
        backups.sort();
        out.extend(backups);
    }
    for doc in docs {
        let name = doc.value.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
        out.push(format!("{:?}", index.action_set(name)));
        out.push(format!("{}", index.cluster_exists(&namespace_of(doc), name)));
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let text = std::str::from_utf8(data).ok();
    for (ext, json) in [("json", true), ("yaml", false)] {
        let path = dir().join(format!("input.{ext}"));
        std::fs::write(&path, data).expect("the input file is written");
        let name = path.display().to_string();
        let streamed = load::read_documents(std::slice::from_ref(&path));
        if let Err(e) = &streamed {
            names_the_file(e, &name, text.is_some());
        }
        match text {
            None => assert!(streamed.is_err(), "a file that is not UTF-8 was read"),
            Some(text) => {
                let mut whole = Vec::new();
                let whole = load::parse_text(&name, text, json, &mut whole).map(|()| whole);
                match (&whole, &streamed) {
                    (Ok(w), Ok(s)) => assert_eq!(w, s, "streamed and whole reads differ"),
                    (Ok(_), Err(e)) => panic!("the streamed read refuses what the whole read takes: {e}"),
                    (Err(e), Ok(_)) => panic!("the streamed read takes what the whole read refuses: {e}"),
                    (Err(e), Err(_)) => names_the_file(e, &name, true),
                }
            }
        }
        let loaded = load::load_every_part(std::slice::from_ref(&path), true);
        match (&streamed, &loaded) {
            (Ok(docs), Ok(loaded)) => {
                let index =
                    load::build_index(docs).unwrap_or_else(|e| panic!("load took what build_index refuses: {e}"));
                assert_eq!(loaded.documents, docs.len());
                let ops: Vec<&Document> = docs.iter().filter(|d| load::kind_of(&d.value) == Kind::OpsRequest).collect();
                assert_eq!(loaded.ops_requests.iter().collect::<Vec<_>>(), ops);
                assert_eq!(contents(&loaded.index, docs), contents(&index, docs));
            }
            (Ok(docs), Err(e)) => {
                names_the_file(e, &name, text.is_some());
                assert!(load::build_index(docs).is_err(), "load refuses what read_documents and build_index take: {e}");
            }
            (Err(e), Ok(_)) => panic!("load takes what read_documents refuses: {e}"),
            (Err(_), Err(e)) => names_the_file(e, &name, text.is_some()),
        }
        // `load` skips what the index does not read of a Backup: it takes every file that loads
        // with every part parsed, with the same result. A file that does not may still load, when
        // what is broken is unread; an error names the file all the same.
        let skipping = load::load(std::slice::from_ref(&path), true);
        match (&loaded, &skipping) {
            (Ok(every), Ok(skipped)) => {
                let docs = streamed.as_ref().expect("it loads, so it reads");
                assert_eq!(skipped.documents, every.documents);
                assert_eq!(skipped.ops_requests, every.ops_requests);
                assert_eq!(contents(&skipped.index, docs), contents(&every.index, docs));
            }
            (Ok(_), Err(e)) => panic!("skipping the unread parts refuses a file that loads: {e}"),
            (Err(_), Err(e)) => names_the_file(e, &name, text.is_some()),
            (Err(_), Ok(_)) => {}
        }
    }
});
