//! Reading manifests and exported objects from files, directories and stdin
//! (multi-document YAML, JSON, `kind: List`), and building the file-backed
//! inventory from them. Every error names the file and the document.
//!
//! A file is streamed: the items of a `kind: List` are read and folded into the
//! index one at a time, so an export of 100 000 Backups is never held whole,
//! neither as text nor as a tree. See [`load`].

mod json_list;
mod yaml_list;

use std::fmt;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::core::facts::{ActionSetFacts, BackupFacts};
use crate::core::inventory::Index;
use crate::crd::{actionset::ActionSet, backup::Backup};

/// Where a document came from: `file` (or `-`), the 1-based document number,
/// and the 1-based item number inside a `kind: List`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: String,
    pub document: usize,
    pub item: Option<usize>,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: document {}", self.file, self.document)?;
        if let Some(item) = self.item {
            write!(f, ", item {item}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub origin: Origin,
    pub value: Value,
}

/// Input that cannot be read or understood; the CLI exits 2 with it.
#[derive(Debug, thiserror::Error)]
#[error("{place}: {message}")]
pub struct LoadError {
    pub place: String,
    pub message: String,
    /// The file, when the error was met while streaming a List item by item.
    streamed: Option<String>,
}

impl LoadError {
    fn new(place: impl fmt::Display, message: impl fmt::Display) -> Self {
        Self { place: place.to_string(), message: message.to_string(), streamed: None }
    }

    /// Marks an error met while streaming the List in `file`.
    fn streaming(mut self, file: &str) -> Self {
        self.streamed = Some(file.to_string());
        self
    }
}

/// Whether a List is read item by item (see [`with_whole_read_on_failure`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Streaming {
    On,
    Off,
}

/// Runs `read` streaming Lists, and once more reading every file whole when a streamed List
/// failed to parse but parses whole.
///
/// Streaming splits a List at the lines that start its items, which is where YAML splits it in
/// every file kubectl writes; but libyaml also lets a quoted scalar run on over lines in the first
/// column, and an item cut there does not parse (found by fuzz/fuzz_targets/loader.rs). The
/// whole read is then the answer, so both reads always agree. A List that does not parse whole
/// either keeps the streamed error, which names the item.
fn with_whole_read_on_failure<T>(read: impl Fn(Streaming) -> Result<T, LoadError>) -> Result<T, LoadError> {
    match read(Streaming::On) {
        Err(e) if e.streamed.as_deref().is_some_and(parses_whole) => read(Streaming::Off),
        result => result,
    }
}

/// Whether the file `name` parses as JSON or YAML when read whole.
fn parses_whole(name: &str) -> bool {
    let Ok(text) = std::fs::read_to_string(name) else { return false };
    parse_text(name, &text, name.ends_with(".json"), &mut Vec::new()).is_ok()
}

/// The namespace of an object with none, as kubectl would apply it.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Reads every document under `paths` (`-` is stdin), in a stable order. A file reached by
/// several paths (`validate examples/ examples/postgresql`, symlinks) is read once, and a
/// directory symlink that leads back into a directory already walked is not followed.
pub fn read_documents(paths: &[PathBuf]) -> Result<Vec<Document>, LoadError> {
    with_whole_read_on_failure(|streaming| {
        let mut docs = Vec::new();
        produce(paths, streaming, &mut |unit| {
            docs.extend(unit.decode()?);
            Ok(())
        })?;
        Ok(docs)
    })
}

/// What [`load`] keeps of the documents it read.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Every Backup, ActionSet and Cluster.
    pub index: Index,
    /// The OpsRequests, when asked for.
    pub ops_requests: Vec<Document>,
    /// How many documents (and List items) were read.
    pub documents: usize,
}

/// Reads every document under `paths` like [`read_documents`], folding each into the index as
/// it is read. Only OpsRequests are kept as objects, and only with `keep_ops_requests`.
///
/// One thread reads; every core decodes (YAML and JSON parsing is most of the cost); this thread
/// folds the results into the index in input order, so that a later copy of a Backup wins and the
/// first error in the input is the one reported, as when read one by one. Units travel in
/// batches (fewer hand-overs between threads), and bounded channels keep what is in flight to
/// a few hundred items.
///
/// A Backup of a `kubectl get -o yaml` List is read without its managedFields and the value of its
/// cluster-snapshot annotation, which the index does not read (`yaml_list::without_unread_parts`):
/// most of its text. So a List whose Backups are broken only there still loads.
pub fn load(paths: &[PathBuf], keep_ops_requests: bool) -> Result<Loaded, LoadError> {
    load_reading(paths, keep_ops_requests, Unread::Skip)
}

/// [`load`] that parses every part of every Backup: what `load` is held to by the loader fuzz target.
#[doc(hidden)]
pub fn load_every_part(paths: &[PathBuf], keep_ops_requests: bool) -> Result<Loaded, LoadError> {
    load_reading(paths, keep_ops_requests, Unread::Parse)
}

/// Whether what the index does not read of a Backup is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unread {
    Skip,
    Parse,
}

fn load_reading(paths: &[PathBuf], keep_ops_requests: bool, unread: Unread) -> Result<Loaded, LoadError> {
    let loaded = with_whole_read_on_failure(|streaming| load_with(paths, keep_ops_requests, streaming, unread));
    crate::memory::give_back_freed();
    loaded
}

fn load_with(
    paths: &[PathBuf],
    keep_ops_requests: bool,
    streaming: Streaming,
    unread: Unread,
) -> Result<Loaded, LoadError> {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc::sync_channel;
    use std::sync::{Arc, Mutex};

    /// Batches in flight in each channel, and units per batch.
    const IN_FLIGHT: usize = 8;
    const BATCH: usize = 32;
    // Asked once: on Linux, the answer reads cgroup files.
    static DECODERS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let decoders = *DECODERS.get_or_init(|| std::thread::available_parallelism().map_or(2, usize::from).clamp(1, 8));
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let (units, to_decode) = sync_channel::<(u64, Vec<Unit>)>(IN_FLIGHT);
        let (decoded, results) = sync_channel::<(u64, Result<Vec<Folded>, LoadError>)>(IN_FLIGHT);
        let to_decode = Arc::new(Mutex::new(to_decode));
        let mut decoder_threads = Vec::with_capacity(decoders);
        for _ in 0..decoders {
            let (to_decode, decoded) = (to_decode.clone(), decoded.clone());
            decoder_threads.push(scope.spawn(move || {
                loop {
                    let next = to_decode.lock().expect("a decoder never panics holding the lock").recv();
                    let Ok((seq, batch)) = next else { return };
                    let folded = batch
                        .into_iter()
                        .map(|unit| {
                            unit.decode_for_index(unread).and_then(|docs| docs.into_iter().map(classify).collect())
                        })
                        .collect::<Result<Vec<Vec<Folded>>, _>>()
                        .map(|all| all.into_iter().flatten().collect());
                    if decoded.send((seq, folded)).is_err() {
                        return;
                    }
                }
            }));
        }
        drop(decoded);
        let stop = &stop;
        let reader = scope.spawn(move || {
            let (mut seq, mut batch) = (0u64, Vec::with_capacity(BATCH));
            let mut send = |batch: &mut Vec<Unit>| -> Result<(), LoadError> {
                if stop.load(Ordering::Relaxed) {
                    return Err(LoadError::new("-", "stopped"));
                }
                let full = std::mem::replace(batch, Vec::with_capacity(BATCH));
                units.send((seq, full)).map_err(|_| LoadError::new("-", "stopped"))?;
                seq += 1;
                Ok(())
            };
            produce(paths, streaming, &mut |unit| {
                batch.push(unit);
                if batch.len() == BATCH { send(&mut batch) } else { Ok(()) }
            })?;
            if batch.is_empty() { Ok(()) } else { send(&mut batch) }
        });

        let mut loaded = Loaded::default();
        let mut error = None;
        let (mut next, mut waiting) = (0u64, BTreeMap::new());
        for (seq, result) in results {
            waiting.insert(seq, result);
            while let Some(result) = waiting.remove(&next) {
                next += 1;
                match result {
                    _ if error.is_some() => {}
                    Ok(items) => {
                        for item in items {
                            loaded.documents += 1;
                            let kept = keep_ops_requests.then_some(&mut loaded.ops_requests);
                            apply(&mut loaded.index, item, kept);
                        }
                    }
                    Err(e) => {
                        stop.store(true, Ordering::Relaxed);
                        error = Some(e);
                    }
                }
            }
        }
        // An error found while decoding comes earlier in the input than one the reader hit later.
        let read = reader.join().expect("the reader does not panic");
        // Joined here rather than by the scope, which waits only for their closures: a thread
        // could still be running its thread-locals' destructors when `load` returned
        // (LeakSanitizer, in the loader fuzz target, reported the memory they free).
        for decoder in decoder_threads {
            decoder.join().expect("a decoder does not panic");
        }
        match (error, read) {
            (Some(e), _) | (None, Err(e)) => Err(e),
            (None, Ok(())) => Ok(loaded),
        }
    })
}

/// A document as the index takes it.
pub enum Folded {
    Backup(BackupFacts<'static>),
    ActionSet(ActionSetFacts),
    /// (namespace, name)
    Cluster(String, String),
    OpsRequest(Document),
    Other,
}

/// What `doc` is to the index, decoded; an OpsRequest is kept whole.
pub fn classify(doc: Document) -> Result<Folded, LoadError> {
    match kind_of(&doc.value) {
        Kind::OpsRequest => Ok(Folded::OpsRequest(doc)),
        _ => facts(&doc),
    }
}

/// The facts the index keeps of `doc` (`Other` for anything that is not a Backup, ActionSet or Cluster).
fn facts(doc: &Document) -> Result<Folded, LoadError> {
    Ok(match kind_of(&doc.value) {
        Kind::Backup => {
            let b: Backup = decode(doc)?;
            Folded::Backup(BackupFacts::from_backup(&b, DEFAULT_NAMESPACE).into_owned())
        }
        Kind::ActionSet => Folded::ActionSet(ActionSetFacts::from_action_set(&decode::<ActionSet>(doc)?)),
        Kind::Cluster => {
            let meta = doc.value.get("metadata");
            let field = |k: &str| meta.and_then(|m| m.get(k)).and_then(Value::as_str);
            let name = field("name").ok_or_else(|| LoadError::new(&doc.origin, "Cluster without metadata.name"))?;
            Folded::Cluster(field("namespace").unwrap_or(DEFAULT_NAMESPACE).to_string(), name.to_string())
        }
        Kind::OpsRequest | Kind::Other => Folded::Other,
    })
}

/// Adds `item` to the index; an OpsRequest goes to `ops_requests` when given.
fn apply(index: &mut Index, item: Folded, ops_requests: Option<&mut Vec<Document>>) {
    match item {
        Folded::Backup(b) => index.apply_backup(b),
        Folded::ActionSet(a) => index.apply_action_set(a),
        Folded::Cluster(namespace, name) => index.apply_cluster(&namespace, &name),
        Folded::OpsRequest(doc) => {
            if let Some(kept) = ops_requests {
                kept.push(doc);
            }
        }
        Folded::Other => {}
    }
}

/// A piece of the input read but not yet decoded. Readers hand these on, so that decoding
/// (most of the cost) can run on every core while the file is still being read.
pub enum Unit {
    /// A document, or an item of a List, already decoded (files read whole).
    Decoded(Document),
    /// One entry of a `kubectl get -o yaml` List: its lines, a one-entry YAML sequence.
    YamlEntry { origin: Origin, text: String, first_line: usize },
    /// One item of a JSON List, as its text.
    JsonItem { origin: Origin, text: String },
}

impl Unit {
    pub fn decode(self) -> Result<Vec<Document>, LoadError> {
        match self {
            Unit::Decoded(doc) => Ok(vec![doc]),
            Unit::YamlEntry { origin, text, first_line } => {
                let entries: Vec<Value> = serde_yaml::from_str(&text).map_err(|e| {
                    LoadError::new(&origin, format!("{e} (the item starts at line {first_line})"))
                        .streaming(&origin.file)
                })?;
                Ok(entries.into_iter().map(|value| Document { origin: origin.clone(), value }).collect())
            }
            Unit::JsonItem { origin, text } => {
                let value =
                    serde_json::from_str(&text).map_err(|e| LoadError::new(&origin, e).streaming(&origin.file))?;
                Ok(vec![Document { origin, value }])
            }
        }
    }

    /// [`Unit::decode`], for the index: with [`Unread::Skip`], a Backup entry of a List is parsed
    /// without what the index does not read of it, or whole when what is left does not parse.
    fn decode_for_index(self, unread: Unread) -> Result<Vec<Document>, LoadError> {
        if unread == Unread::Skip
            && let Unit::YamlEntry { origin, text, .. } = &self
            && let Some(slim) = yaml_list::without_unread_parts(text)
            && let Ok(entries) = serde_yaml::from_str::<Vec<Value>>(&slim)
            && entries.iter().all(|e| kind_of(e) == Kind::Backup)
        {
            return Ok(entries.into_iter().map(|value| Document { origin: origin.clone(), value }).collect());
        }
        self.decode()
    }
}

type Sink<'a> = dyn FnMut(Unit) -> Result<(), LoadError> + 'a;

/// Hands every document under `paths` to `sink`, in order.
fn produce(paths: &[PathBuf], streaming: Streaming, sink: &mut Sink<'_>) -> Result<(), LoadError> {
    let mut seen = Seen::default();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).map_err(|e| LoadError::new("-", e))?;
            parse_str("-", &text, false, sink)?;
            continue;
        }
        let meta = std::fs::metadata(path).map_err(|e| LoadError::new(path.display(), e))?;
        let files = if meta.is_dir() { walk(path, &mut seen)? } else { vec![path.clone()] };
        for file in files {
            if seen.first_visit(&file)? {
                read_file(&file, streaming, sink)?;
            }
        }
    }
    Ok(())
}

/// Canonical paths of the files and directories read so far.
#[derive(Default)]
struct Seen(std::collections::HashSet<PathBuf>);

impl Seen {
    fn first_visit(&mut self, path: &Path) -> Result<bool, LoadError> {
        let canonical = std::fs::canonicalize(path).map_err(|e| LoadError::new(path.display(), e))?;
        Ok(self.0.insert(canonical))
    }
}

fn walk(dir: &Path, seen: &mut Seen) -> Result<Vec<PathBuf>, LoadError> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        if !seen.first_visit(&d)? {
            continue;
        }
        let entries = std::fs::read_dir(&d).map_err(|e| LoadError::new(d.display(), e))?;
        for entry in entries {
            let path = entry.map_err(|e| LoadError::new(d.display(), e))?.path();
            if path.is_dir() {
                pending.push(path);
            } else if matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json")) {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

fn open_buffered(path: &Path) -> Result<BufReader<File>, LoadError> {
    Ok(BufReader::with_capacity(1 << 16, File::open(path).map_err(|e| LoadError::new(path.display(), e))?))
}

fn read_file(path: &Path, streaming: Streaming, sink: &mut Sink<'_>) -> Result<(), LoadError> {
    let name = path.display().to_string();
    let json = path.extension().is_some_and(|e| e == "json");
    // A List is streamed item by item; anything else is small enough to read whole.
    let streamed = streaming == Streaming::On
        && if json { json_list::stream(path, &name, sink)? } else { yaml_list::stream(path, &name, sink)? };
    if streamed {
        return Ok(());
    }
    let bytes = std::fs::read(path).map_err(|e| LoadError::new(&name, e))?;
    let text = String::from_utf8(bytes).map_err(|e| LoadError::new(&name, format!("not UTF-8: {e}")))?;
    parse_str(&name, &text, json, sink)
}

/// Splits `text` into documents: one JSON value, or a YAML stream.
pub fn parse_text(file: &str, text: &str, json: bool, docs: &mut Vec<Document>) -> Result<(), LoadError> {
    parse_str(file, text, json, &mut |unit| {
        docs.extend(unit.decode()?);
        Ok(())
    })
}

fn parse_str(file: &str, text: &str, json: bool, sink: &mut Sink<'_>) -> Result<(), LoadError> {
    if json {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| LoadError::new(Origin { file: file.into(), document: 1, item: None }, e))?;
        return push(file, 1, value, sink);
    }
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let origin = Origin { file: file.into(), document: i + 1, item: None };
        let value = Value::deserialize(doc).map_err(|e| LoadError::new(&origin, e))?;
        push(file, i + 1, value, sink)?;
    }
    Ok(())
}

pub(crate) fn is_list(kind: Option<&str>) -> bool {
    kind.is_some_and(|k| k.ends_with("List"))
}

/// Visits a document, or the items of a `kind: List`; empty documents are skipped.
fn push(file: &str, document: usize, mut value: Value, sink: &mut Sink<'_>) -> Result<(), LoadError> {
    let origin = |item| Origin { file: file.into(), document, item };
    if !is_list(value.get("kind").and_then(Value::as_str)) {
        if !value.is_null() {
            sink(Unit::Decoded(Document { origin: origin(None), value }))?;
        }
        return Ok(());
    }
    match value.get_mut("items").map(Value::take) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .try_for_each(|(i, value)| sink(Unit::Decoded(Document { origin: origin(Some(i + 1)), value }))),
        Some(_) => Err(LoadError::new(origin(None), "items: not an array of objects")),
    }
}

/// What a document is to pitrguard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    OpsRequest,
    Backup,
    ActionSet,
    Cluster,
    Other,
}

pub fn kind_of(value: &Value) -> Kind {
    let api = value.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let group = api.split_once('/').map_or("", |(g, _)| g);
    match (group, value.get("kind").and_then(Value::as_str).unwrap_or("")) {
        ("apps.kubeblocks.io" | "operations.kubeblocks.io", "OpsRequest") => Kind::OpsRequest,
        ("dataprotection.kubeblocks.io", "Backup") => Kind::Backup,
        ("dataprotection.kubeblocks.io", "ActionSet") => Kind::ActionSet,
        ("apps.kubeblocks.io", "Cluster") => Kind::Cluster,
        _ => Kind::Other,
    }
}

/// Builds the file-backed inventory from every Backup, ActionSet and Cluster in `docs`.
pub fn build_index(docs: &[Document]) -> Result<Index, LoadError> {
    let mut index = Index::new();
    for doc in docs {
        apply(&mut index, facts(doc)?, None);
    }
    Ok(index)
}

fn decode<T: serde::de::DeserializeOwned>(doc: &Document) -> Result<T, LoadError> {
    let kind = doc.value.get("kind").and_then(Value::as_str).unwrap_or("object");
    T::deserialize(&doc.value).map_err(|e| LoadError::new(&doc.origin, format!("invalid {kind}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documents of `text` written to a file named `name`, as [`read_documents`] reads them.
    fn read(name: &str, text: &str) -> Result<Vec<Document>, LoadError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let docs = read_documents(std::slice::from_ref(&path));
        docs.map(|docs| {
            docs.into_iter().map(|d| Document { origin: Origin { file: name.into(), ..d.origin }, ..d }).collect()
        })
    }

    /// The documents of `text` written to a file named `name`, as [`load`] indexes them.
    fn load_text(name: &str, text: &str) -> Result<Loaded, LoadError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        load(&[path], false)
    }

    #[test]
    fn a_backups_unread_parts_are_skipped_and_may_be_broken() {
        let text = include_str!("../../fuzz/seeds/loader/kubectl-backups-managed-fields.yaml");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backups.yaml");
        std::fs::write(&path, text).unwrap();
        let paths = std::slice::from_ref(&path);
        let (skipping, every) = (load(paths, false).unwrap(), load_every_part(paths, false).unwrap());
        assert_eq!(skipping.index.counts().backups, 2);
        let facts = |l: &Loaded| {
            let mut all = Vec::new();
            crate::core::Inventory::for_each_backup_in(&l.index, "bench-0", &mut |b| all.push(format!("{b:?}")));
            all.sort();
            all
        };
        assert_eq!(facts(&skipping), facts(&every));
        assert!(facts(&skipping).iter().all(|b| b.contains("has_cluster_snapshot: true")), "{:?}", facts(&skipping));
        // A managedFields entry that does not decode: only the reading of every part refuses it.
        std::fs::write(&path, text.replacen("      time: \"2024-05-07T00:00:00Z\"", "      time: [not, a, time]", 1))
            .unwrap();
        assert!(load_every_part(paths, false).is_err());
        assert_eq!(facts(&load(paths, false).unwrap()), facts(&every));
    }

    /// Whether `yaml_list` streams `text` as a List rather than leave it to the whole read.
    fn yaml_streams(text: &str) -> bool {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.yaml");
        std::fs::write(&path, text).unwrap();
        yaml_list::stream(&path, "x.yaml", &mut |_| Ok(())).unwrap()
    }

    /// The same text parsed whole, without streaming.
    fn whole(name: &str, text: &str) -> Vec<Document> {
        let mut docs = Vec::new();
        parse_text(name, text, name.ends_with(".json"), &mut docs).unwrap();
        docs
    }

    const KUBECTL_LIST: &str = r#"apiVersion: v1
items:
- apiVersion: dataprotection.kubeblocks.io/v1alpha1
  kind: Backup
  metadata:
    annotations:
      kubeblocks.io/cluster-snapshot: |
        {"spec":

        - not an entry
        }
      quoted: "- also not
        an entry"
    name: full-1
# a comment in the first column
    namespace: demo
  status:
    phase: Completed
-   apiVersion: dataprotection.kubeblocks.io/v1alpha1
    kind: Backup
    metadata: {name: full-2, namespace: demo}
- null
kind: List
metadata:
  resourceVersion: ""
"#;

    #[test]
    fn a_kubectl_yaml_list_is_streamed_item_by_item_with_the_same_result() {
        let name = "backups.yaml";
        let mut streamed = Vec::new();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, KUBECTL_LIST).unwrap();
        let done = yaml_list::stream(&path, name, &mut |unit| {
            assert!(matches!(unit, Unit::YamlEntry { .. }), "an entry is handed on as text");
            streamed.extend(unit.decode()?);
            Ok(())
        });
        assert!(done.unwrap(), "the kubectl layout is streamed");
        let whole = whole(name, KUBECTL_LIST);
        assert_eq!(whole.len(), 3);
        assert_eq!(
            streamed.iter().map(|d| &d.value).collect::<Vec<_>>(),
            whole.iter().map(|d| &d.value).collect::<Vec<_>>()
        );
        assert_eq!(
            streamed.iter().map(|d| &d.origin).collect::<Vec<_>>(),
            whole.iter().map(|d| &d.origin).collect::<Vec<_>>()
        );
        assert_eq!(
            streamed[0].value.pointer("/metadata/annotations/quoted"),
            Some(&Value::from("- also not an entry"))
        );
    }

    #[test]
    fn a_broken_field_beside_the_items_of_a_streamed_yaml_list_is_an_error() {
        // Found by fuzz/fuzz_targets/loader.rs: the List's own fields were skipped unread.
        let text = "apiVersion: v1\nitems:\n- kind: Backup\n  metadata: {name: a}\nkind: List\nmetadata:\n  \
                    resourceVersion: ''ion: x\n";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("list.yaml");
        std::fs::write(&path, text).unwrap();
        let e = yaml_list::stream(&path, "list.yaml", &mut |_| Ok(())).unwrap_err().to_string();
        assert!(e.starts_with("list.yaml: document 1: "), "{e}");
        let mut docs = Vec::new();
        assert!(parse_text("list.yaml", text, false, &mut docs).is_err(), "the whole read refuses it too");
        let good = text.replace("''ion: x", "''");
        std::fs::write(&path, &good).unwrap();
        assert!(yaml_list::stream(&path, "list.yaml", &mut |_| Ok(())).unwrap());
    }

    #[test]
    fn other_yaml_layouts_are_read_whole_with_the_same_result() {
        let indented = "kind: List\nitems:\n  - kind: Backup\n    metadata: {name: a}\n  - kind: Backup\n";
        let flow = "kind: List\nitems: [{kind: Backup}]\n";
        let two_documents = "kind: List\nitems:\n- kind: Backup\n---\nkind: Backup\n";
        let not_a_list = "kind: Backup\nitems:\n- a\n";
        for text in [indented, flow, two_documents, not_a_list] {
            assert!(!yaml_streams(text), "{text}");
            assert_eq!(read("x.yaml", text).unwrap(), whole("x.yaml", text), "{text}");
        }
    }

    #[test]
    fn a_json_list_is_streamed_even_with_items_before_kind() {
        // Strings with quotes, brackets and backslashes, numbers, nesting, and an item far larger
        // than the reader's buffer, with escapes across its boundaries.
        let big = "\\\"]}{[".repeat(40_000);
        let text = format!(
            r#"{{"apiVersion": "v1", "items": [{{"kind": "Backup", "metadata": {{"name": "a", "annotations":
                {{"x": "}}]\"\\", "big": "{big}"}}}}, "n": [1, 2.5e3, -0, true, null, [[]], {{}}]}},
                {{"kind":"Cluster"}} ,"text",  7 ],
                "kind": "List", "metadata": {{"resourceVersion": ""}}}}"#
        );
        let streamed = read("list.json", &text).unwrap();
        assert_eq!(streamed, whole("list.json", &text));
        assert_eq!(streamed.len(), 4);
        assert_eq!(streamed[1].origin.to_string(), "list.json: document 1, item 2");
        let empty = r#"{"kind": "List", "items": null}"#;
        assert_eq!(read("empty.json", empty).unwrap(), vec![]);
    }

    #[test]
    fn a_broken_item_is_named_by_file_document_and_item() {
        let yaml = "apiVersion: v1\nitems:\n- kind: Backup\n- kind: Backup: x\nkind: List\n";
        let e = read("bad.yaml", yaml).unwrap_err().to_string();
        assert!(e.contains("bad.yaml: document 1, item 2: ") && e.contains("the item starts at line 4"), "{e}");
        let json = r#"{"kind": "List", "items": [{"kind": "Backup"}, {"kind": tru}]}"#;
        let e = read("bad.json", json).unwrap_err().to_string();
        assert!(e.contains("bad.json: document 1, item 2: "), "{e}");
        let skeleton = r#"{"kind": "List", "items": [{"kind": "Backup"} {"kind": "Backup"}]}"#;
        let e = read("skeleton.json", skeleton).unwrap_err().to_string();
        assert!(e.contains("skeleton.json: document 1: expected `,` or `]` after item 1 at line 1"), "{e}");
        let not_array = r#"{"kind": "List", "items": {"kind": "Backup"}}"#;
        let e = read("odd.json", not_array).unwrap_err().to_string();
        assert!(e.contains("odd.json: document 1: ") && e.contains("items"), "{e}");
        let e = read("odd.yaml", "kind: List\nitems: {kind: Backup}\n").unwrap_err().to_string();
        assert!(e.contains("odd.yaml: document 1: ") && e.contains("items"), "{e}");
    }

    #[test]
    fn a_json_list_that_is_not_utf8_outside_its_items_is_refused_like_the_whole_read() {
        // Found by fuzz/fuzz_targets/loader.rs in CI: serde_json skips a string it ignores
        // without checking its bytes, so the streamed read took what the whole read refuses.
        let dir = tempfile::tempdir().unwrap();
        for (field, text) in [
            ("metadata", &b"{\"kind\": \"List\", \"metadata\": {\"x\": \"\xff\xff\"}, \"items\": []}"[..]),
            ("a key", &b"{\"kind\": \"List\", \"\xff\": 1, \"items\": []}"[..]),
        ] {
            let path = dir.path().join("odd.json");
            std::fs::write(&path, text).unwrap();
            let e = read_documents(std::slice::from_ref(&path)).unwrap_err().to_string();
            assert!(e.contains("odd.json") && e.contains("UTF-8"), "{field}: {e}");
        }
    }

    #[test]
    fn a_quoted_scalar_running_on_in_the_first_column_reads_as_the_whole_file_does() {
        // Found by fuzz/fuzz_targets/loader.rs: libyaml lets the quoted value run on over a line in
        // the first column, where the streamed read had cut the item.
        let text = "apiVersion: v1\nitems:\n- kind: Backup\n  apiVersion: dataprotection.kubeblocks.io/v1alpha1\n  \
                    spec: {}\n  metadata:\n    name: b\n    annotations:\n      note: 'runs on\nspec: in the quote'\nkind: List\n";
        let docs = read("odd.yaml", text).unwrap();
        assert_eq!(docs, whole("odd.yaml", text));
        assert_eq!(docs[0].value["metadata"]["annotations"]["note"], "runs on spec: in the quote");
        let loaded = load_text("odd.yaml", text).unwrap();
        assert_eq!((loaded.documents, loaded.index.counts().backups), (1, 1));
    }

    #[test]
    fn a_quoted_scalar_that_swallows_the_lists_kind_is_no_list_to_load_either() {
        // Found by fuzz/fuzz_targets/loader.rs: the quote runs on over `kind: List`, so the whole
        // file is one document of no kind. The streamed read had taken it as a List, and `load`
        // refused its first item (a Backup without spec) while `read_documents` read it whole.
        let text = "apiVersion: v1\nitems:\n- kind: Backup\n  apiVersion: dataprotection.kubeblocks.io/v1alpha1\n  \
                    metadata: {labels: {}}\n- kind: Backup\n  metadata:\n    annotations:\n      note: 'runs on\n\
                    kind: List\nmetadata:\n  resourceVersion: #'\n";
        let docs = read("odd.yaml", text).unwrap();
        assert_eq!(docs, whole("odd.yaml", text));
        assert_eq!((docs.len(), kind_of(&docs[0].value)), (1, Kind::Other));
        let loaded = load_text("odd.yaml", text).unwrap();
        assert_eq!((loaded.documents, loaded.index.counts().backups), (1, 0));
    }

    #[test]
    fn a_yaml_lists_kind_that_goes_on_over_indented_lines_is_no_list() {
        // Found by fuzz/fuzz_targets/loader.rs: read whole, `kind: List` followed by an indented
        // line is a plain scalar of two lines, so the file is no List; a comment line ends it.
        let kind_runs_on = "apiVersion: v1\nitems:\n- a\nkind: List\n\n  more\nmetadata: {}\n";
        assert!(!yaml_streams(kind_runs_on));
        let docs = read("odd.yaml", kind_runs_on).unwrap();
        assert_eq!(docs, whole("odd.yaml", kind_runs_on));
        assert_eq!((docs.len(), docs[0].value["kind"].as_str()), (1, Some("List\nmore")));
        let commented = "apiVersion: v1\nitems:\n- a\nkind: List\n  # c\nmetadata: {}\n";
        assert!(yaml_streams(commented));
        assert_eq!(read("odd.yaml", commented).unwrap(), whole("odd.yaml", commented));
    }

    #[test]
    fn a_yaml_list_with_a_line_break_other_than_newline_reads_as_the_whole_file_does() {
        // Found by fuzz/fuzz_targets/loader.rs: libyaml breaks lines at a lone `\r` (and at NEL,
        // LS, PS), so `-` after one starts another entry of the whole read; the streamed read
        // had kept it inside the first entry.
        let list =
            |item: &str| format!("apiVersion: v1\nitems:\n- {item}\nkind: List\nmetadata:\n  resourceVersion: ''\n");
        for br in ["\r", "\u{85}", "\u{2028}", "\u{2029}"] {
            let item = format!("a{br}-{br}- b");
            let text = list(&item);
            assert!(!yaml_streams(&text), "{item:?}");
            let docs = read("odd.yaml", &text).unwrap();
            assert_eq!(docs, whole("odd.yaml", &text), "{item:?}");
            assert_eq!(docs.len(), 3, "{item:?}: {docs:?}");
        }
        // A Windows file (CRLF throughout) is still streamed, and reads as the whole file does.
        let text = KUBECTL_LIST.replace('\n', "\r\n");
        assert!(yaml_streams(&text));
        assert_eq!(read("crlf.yaml", &text).unwrap(), whole("crlf.yaml", &text));
    }

    #[test]
    fn a_yaml_lists_kind_and_other_fields_read_as_the_whole_file_reads_them() {
        // Found by fuzz/fuzz_targets/loader.rs: `&List` is an anchor on an empty kind, so the file
        // is no List; a tag in the List's metadata is an error of the whole read.
        let list = |tail: &str| format!("apiVersion: v1\nitems:\n- kind: Backup\n  metadata: {{name: a}}\n{tail}");
        let text = list("kind: &List\nmetadata: {}\n");
        let docs = read("odd.yaml", &text).unwrap();
        assert_eq!(docs, whole("odd.yaml", &text));
        assert_eq!(docs.len(), 1);
        let text = list("kind: List\nmetadata:\n  resourceVersion:\n    ! \n");
        assert!(parse_text("odd.yaml", &text, false, &mut Vec::new()).is_err(), "{text}");
        let e = read("odd.yaml", &text).unwrap_err().to_string();
        assert!(e.contains("odd.yaml: document 1: "), "{e}");
    }

    #[test]
    fn a_yaml_list_with_a_sequence_or_items_outside_its_items_reads_as_the_whole_file_does() {
        // Found by fuzz/fuzz_targets/loader.rs: a sequence after another top-level key was taken
        // as more items (YAML refuses it), and a second `items:` added its items to the first's
        // (YAML keeps the last).
        let list = |middle: &str| format!("apiVersion: v1\nitems:\n- kind: A\n{middle}kind: List\n");
        let text = list("other:\n  a: 1\n- kind: B\n");
        assert!(parse_text("odd.yaml", &text, false, &mut Vec::new()).is_err(), "{text}");
        assert!(read("odd.yaml", &text).is_err(), "{text}");
        let text = list("items:\n- kind: C\n");
        let docs = read("odd.yaml", &text).unwrap();
        assert_eq!(docs, whole("odd.yaml", &text));
        assert_eq!(docs.len(), 1, "{docs:?}");
    }

    #[test]
    fn load_folds_the_inventory_and_keeps_only_ops_requests() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("list.yaml");
        let text = "apiVersion: v1\nitems:\n- apiVersion: dataprotection.kubeblocks.io/v1alpha1\n  kind: Backup\n  \
                    metadata: {name: b, namespace: demo}\n  spec: {}\n- apiVersion: operations.kubeblocks.io/v1alpha1\n  \
                    kind: OpsRequest\n  metadata: {name: r}\n  spec: {type: Restore}\nkind: List\n";
        std::fs::write(&path, text).unwrap();
        let loaded = load(&[path], true).unwrap();
        assert_eq!((loaded.documents, loaded.ops_requests.len(), loaded.index.counts().backups), (2, 1, 1));
    }

    #[test]
    fn load_reports_the_first_error_in_the_input_and_keeps_the_last_copy_of_a_backup() {
        let entry = |i: usize, phase: &str| {
            format!(
                "- apiVersion: dataprotection.kubeblocks.io/v1alpha1\n  kind: Backup\n  metadata: {{name: b{i}, namespace: demo}}\n  \
                 spec: {{}}\n  status: {{phase: {phase}}}\n"
            )
        };
        let list = |entries: Vec<String>| format!("apiVersion: v1\nitems:\n{}kind: List\n", entries.concat());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("many.yaml");

        let mut entries: Vec<String> = (0..600).map(|i| entry(i, "Completed")).collect();
        entries[150] = "- kind: broken: x\n".into();
        entries[450] = "- kind: broken: too\n".into();
        std::fs::write(&path, list(entries)).unwrap();
        let e = load(std::slice::from_ref(&path), false).unwrap_err().to_string();
        assert!(e.contains("document 1, item 151:"), "{e}");

        let mut entries: Vec<String> = (0..600).map(|i| entry(i % 300, "Running")).collect();
        entries[599] = entry(299, "Failed");
        std::fs::write(&path, list(entries)).unwrap();
        let loaded = load(&[path], false).unwrap();
        assert_eq!((loaded.documents, loaded.index.counts().backups), (600, 300));
        use crate::core::Inventory;
        assert_eq!(loaded.index.backup("demo", "b299").unwrap().phase.as_deref(), Some("Failed"));
        assert_eq!(loaded.index.backup("demo", "b0").unwrap().phase.as_deref(), Some("Running"));
    }
}
