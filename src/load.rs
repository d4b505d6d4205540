//! Reading manifests and exported objects from files, directories and stdin
//! (multi-document YAML, JSON, `kind: List`), and building the file-backed
//! inventory from them. Every error names the file and the document.
//!
//! A file is streamed: the items of a `kind: List` are read and folded into the
//! index one at a time, so an export of 100 000 Backups is never held whole,
//! neither as text nor as a tree. See [`load`].

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
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
}

impl LoadError {
    fn new(place: impl fmt::Display, message: impl fmt::Display) -> Self {
        Self { place: place.to_string(), message: message.to_string() }
    }
}

/// The namespace of an object with none, as kubectl would apply it.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Reads every document under `paths` (`-` is stdin), in a stable order. A file reached by
/// several paths (`validate examples/ examples/postgresql`, symlinks) is read once, and a
/// directory symlink that leads back into a directory already walked is not followed.
pub fn read_documents(paths: &[PathBuf]) -> Result<Vec<Document>, LoadError> {
    let mut docs = Vec::new();
    for_each_document(paths, &mut |doc| {
        docs.push(doc);
        Ok(())
    })?;
    Ok(docs)
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
pub fn load(paths: &[PathBuf], keep_ops_requests: bool) -> Result<Loaded, LoadError> {
    let mut loaded = Loaded::default();
    for_each_document(paths, &mut |doc| {
        loaded.documents += 1;
        fold(&mut loaded.index, &doc)?;
        if keep_ops_requests && kind_of(&doc.value) == Kind::OpsRequest {
            loaded.ops_requests.push(doc);
        }
        Ok(())
    })?;
    Ok(loaded)
}

type Visit<'a> = dyn FnMut(Document) -> Result<(), LoadError> + 'a;

/// Calls `visit` with every document under `paths`, the items of a List one by one.
pub fn for_each_document(paths: &[PathBuf], visit: &mut Visit<'_>) -> Result<(), LoadError> {
    let mut seen = Seen::default();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).map_err(|e| LoadError::new("-", e))?;
            parse_str("-", &text, false, visit)?;
            continue;
        }
        let meta = std::fs::metadata(path).map_err(|e| LoadError::new(path.display(), e))?;
        let files = if meta.is_dir() { walk(path, &mut seen)? } else { vec![path.clone()] };
        for file in files {
            if seen.first_visit(&file)? {
                read_file(&file, visit)?;
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

fn open(path: &Path) -> Result<BufReader<File>, LoadError> {
    Ok(BufReader::with_capacity(1 << 16, File::open(path).map_err(|e| LoadError::new(path.display(), e))?))
}

fn read_file(path: &Path, visit: &mut Visit<'_>) -> Result<(), LoadError> {
    let name = path.display().to_string();
    let json = path.extension().is_some_and(|e| e == "json");
    // A List is streamed item by item; anything else is small enough to read whole.
    let streamed = if json { stream_json_list(path, &name, visit)? } else { stream_yaml_list(path, &name, visit)? };
    if streamed {
        return Ok(());
    }
    let bytes = std::fs::read(path).map_err(|e| LoadError::new(&name, e))?;
    let text = String::from_utf8(bytes).map_err(|e| LoadError::new(&name, format!("not UTF-8: {e}")))?;
    parse_str(&name, &text, json, visit)
}

/// Splits `text` into documents: one JSON value, or a YAML stream.
pub fn parse_text(file: &str, text: &str, json: bool, docs: &mut Vec<Document>) -> Result<(), LoadError> {
    parse_str(file, text, json, &mut |doc| {
        docs.push(doc);
        Ok(())
    })
}

fn parse_str(file: &str, text: &str, json: bool, visit: &mut Visit<'_>) -> Result<(), LoadError> {
    if json {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| LoadError::new(Origin { file: file.into(), document: 1, item: None }, e))?;
        return push(file, 1, value, visit);
    }
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let origin = Origin { file: file.into(), document: i + 1, item: None };
        let value = Value::deserialize(doc).map_err(|e| LoadError::new(&origin, e))?;
        push(file, i + 1, value, visit)?;
    }
    Ok(())
}

fn is_list(kind: Option<&str>) -> bool {
    kind.is_some_and(|k| k.ends_with("List"))
}

/// Visits a document, or the items of a `kind: List`; empty documents are skipped.
fn push(file: &str, document: usize, mut value: Value, visit: &mut Visit<'_>) -> Result<(), LoadError> {
    let origin = |item| Origin { file: file.into(), document, item };
    if !is_list(value.get("kind").and_then(Value::as_str)) {
        if !value.is_null() {
            visit(Document { origin: origin(None), value })?;
        }
        return Ok(());
    }
    match value.get_mut("items").map(Value::take) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .try_for_each(|(i, value)| visit(Document { origin: origin(Some(i + 1)), value })),
        Some(_) => Err(LoadError::new(origin(None), "items: not an array of objects")),
    }
}

/// A JSON file whose top-level `kind` ends in `List`: streams its `items`. Two passes over the
/// file, because `kubectl get -o json` writes `items` before `kind`. `false`: not such a file.
fn stream_json_list(path: &Path, name: &str, visit: &mut Visit<'_>) -> Result<bool, LoadError> {
    use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

    #[derive(Deserialize)]
    struct TopKind {
        #[serde(default)]
        kind: Option<Value>,
    }
    let origin = |item: Option<usize>| Origin { file: name.into(), document: 1, item };
    let mut de = serde_json::Deserializer::from_reader(open(path)?);
    // Syntax errors are left to the whole-file read, which reports them with their position.
    let Ok(top) = TopKind::deserialize(&mut de) else { return Ok(false) };
    if !is_list(top.kind.as_ref().and_then(Value::as_str)) {
        return Ok(false);
    }

    struct Items<'v, 'a> {
        name: &'v str,
        visit: &'v mut Visit<'a>,
        error: Option<LoadError>,
    }
    /// The List object: `items` is streamed, everything else skipped.
    impl<'de> Visitor<'de> for &mut Items<'_, '_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a List")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                if key == "items" {
                    map.next_value_seed(ItemsSeed(&mut *self))?;
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(())
        }
    }
    /// `items`: null, or an array whose elements are visited one by one.
    struct ItemsSeed<'i, 'v, 'a>(&'i mut Items<'v, 'a>);
    impl<'de> DeserializeSeed<'de> for ItemsSeed<'_, '_, '_> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_option(self)
        }
    }
    impl<'de> Visitor<'de> for ItemsSeed<'_, '_, '_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("items: an array of objects")
        }
        fn visit_none<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_seq(self)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let items = self.0;
            let mut n = 0;
            while let Some(item) = seq.next_element::<Value>()? {
                n += 1;
                let origin = Origin { file: items.name.into(), document: 1, item: Some(n) };
                if let Err(e) = (items.visit)(Document { origin, value: item }) {
                    items.error = Some(e);
                    return Err(serde::de::Error::custom("stopped"));
                }
            }
            Ok(())
        }
    }

    let mut items = Items { name, visit, error: None };
    let mut de = serde_json::Deserializer::from_reader(open(path)?);
    let result = serde::Deserializer::deserialize_map(&mut de, &mut items).and_then(|()| de.end());
    match (items.error, result) {
        (Some(e), _) => Err(e),
        (None, Err(e)) => Err(LoadError::new(origin(None), e)),
        (None, Ok(())) => Ok(true),
    }
}

/// A YAML file that is one List document as `kubectl get -o yaml` writes it (a top-level
/// `kind: ...List`, and `items:` whose entries start with `- ` in the first column): streams
/// its items, each parsed on its own. `false`: any other file, read whole instead.
///
/// An entry ends at the next line that is neither empty, nor indented, nor a comment: YAML
/// keeps everything inside an entry indented, block scalars included.
fn stream_yaml_list(path: &Path, name: &str, visit: &mut Visit<'_>) -> Result<bool, LoadError> {
    let lines = |path: &Path| -> Result<_, LoadError> {
        let name = name.to_string();
        Ok(open(path)?.lines().map(move |l| l.map_err(|e| LoadError::new(&name, e))))
    };
    // Pass 1: is this one document with a top-level `kind: ...List` and column-0 items?
    let (mut list, mut items_at_column_0, mut after_items) = (false, false, false);
    for (i, line) in lines(path)?.enumerate() {
        let Ok(line) = line else { return Ok(false) }; // e.g. not UTF-8: the general reader says so
        if line.starts_with("---") && i > 0 || line.starts_with("...") || line.starts_with('%') {
            return Ok(false); // several documents, or directives: the general reader
        }
        if after_items && !line.trim().is_empty() && !line.starts_with('#') {
            items_at_column_0 = line == "-" || line.starts_with("- ");
            after_items = false;
        }
        if line.trim_end() == "items:" {
            after_items = true;
        } else if let Some(kind) = line.strip_prefix("kind:") {
            list = is_list(Some(kind.trim().trim_matches(|c| c == '"' || c == '\'')));
        }
    }
    if !(list && items_at_column_0) {
        return Ok(false);
    }
    // Pass 2: each entry's lines, parsed as a one-entry sequence.
    let (mut chunk, mut n, mut in_items, mut first_line) = (String::new(), 0usize, false, 0usize);
    let mut flush = |chunk: &mut String, n: usize, first_line: usize| -> Result<(), LoadError> {
        if chunk.is_empty() {
            return Ok(());
        }
        let origin = Origin { file: name.into(), document: 1, item: Some(n) };
        let entries: Vec<Value> = serde_yaml::from_str(chunk)
            .map_err(|e| LoadError::new(&origin, format!("{e} (the item starts at line {first_line})")))?;
        chunk.clear();
        for value in entries {
            visit(Document { origin: origin.clone(), value })?;
        }
        Ok(())
    };
    for (i, line) in lines(path)?.enumerate() {
        let line = line?;
        let column_0 = !line.is_empty() && !line.starts_with([' ', '\t', '#']);
        if column_0 {
            flush(&mut chunk, n, first_line)?;
            let entry = line == "-" || line.starts_with("- ");
            in_items = entry || line.trim_end() == "items:";
            if !entry {
                continue;
            }
            n += 1;
            first_line = i + 1;
        }
        if in_items && (column_0 || !chunk.is_empty()) {
            chunk.push_str(&line);
            chunk.push('\n');
        }
    }
    flush(&mut chunk, n, first_line)?;
    Ok(true)
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
        fold(&mut index, doc)?;
    }
    Ok(index)
}

/// Adds a document's object to the index, when it is a kind the rules read.
fn fold(index: &mut Index, doc: &Document) -> Result<(), LoadError> {
    match kind_of(&doc.value) {
        Kind::Backup => {
            let b: Backup = decode(doc)?;
            index.apply_backup(BackupFacts::from_backup(&b, DEFAULT_NAMESPACE));
        }
        Kind::ActionSet => {
            let a: ActionSet = decode(doc)?;
            index.apply_action_set(ActionSetFacts::from_action_set(&a));
        }
        Kind::Cluster => {
            let meta = doc.value.get("metadata");
            let field = |k: &str| meta.and_then(|m| m.get(k)).and_then(Value::as_str);
            let name = field("name").ok_or_else(|| LoadError::new(&doc.origin, "Cluster without metadata.name"))?;
            index.apply_cluster(field("namespace").unwrap_or(DEFAULT_NAMESPACE), name);
        }
        Kind::OpsRequest | Kind::Other => {}
    }
    Ok(())
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
        let done = stream_yaml_list(&path, name, &mut |d| {
            streamed.push(d);
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
    fn other_yaml_layouts_are_read_whole_with_the_same_result() {
        let indented = "kind: List\nitems:\n  - kind: Backup\n    metadata: {name: a}\n  - kind: Backup\n";
        let flow = "kind: List\nitems: [{kind: Backup}]\n";
        let two_documents = "kind: List\nitems:\n- kind: Backup\n---\nkind: Backup\n";
        let not_a_list = "kind: Backup\nitems:\n- a\n";
        for text in [indented, flow, two_documents, not_a_list] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("x.yaml");
            std::fs::write(&path, text).unwrap();
            assert!(!stream_yaml_list(&path, "x.yaml", &mut |_| Ok(())).unwrap(), "{text}");
            assert_eq!(read("x.yaml", text).unwrap(), whole("x.yaml", text), "{text}");
        }
    }

    #[test]
    fn a_json_list_is_streamed_even_with_items_before_kind() {
        let text = r#"{"apiVersion": "v1", "items": [{"kind": "Backup", "metadata": {"name": "a"}}, {"kind": "Cluster"}],
                      "kind": "List", "metadata": {}}"#;
        let streamed = read("list.json", text).unwrap();
        assert_eq!(streamed, whole("list.json", text));
        assert_eq!(streamed[1].origin.to_string(), "list.json: document 1, item 2");
        let empty = r#"{"kind": "List", "items": null}"#;
        assert_eq!(read("empty.json", empty).unwrap(), vec![]);
    }

    #[test]
    fn a_broken_item_is_named_by_file_document_and_item() {
        let yaml = "apiVersion: v1\nitems:\n- kind: Backup\n- kind: [unclosed\nkind: List\n";
        let e = read("bad.yaml", yaml).unwrap_err().to_string();
        assert!(e.contains("bad.yaml: document 1, item 2: ") && e.contains("the item starts at line 4"), "{e}");
        let json = r#"{"kind": "List", "items": [{"kind": "Backup"}, {"kind": tru}]}"#;
        let e = read("bad.json", json).unwrap_err().to_string();
        assert!(e.contains("bad.json: document 1: "), "{e}");
        let not_array = r#"{"kind": "List", "items": {"kind": "Backup"}}"#;
        let e = read("odd.json", not_array).unwrap_err().to_string();
        assert!(e.contains("odd.json: document 1: ") && e.contains("items"), "{e}");
        let e = read("odd.yaml", "kind: List\nitems: {kind: Backup}\n").unwrap_err().to_string();
        assert!(e.contains("odd.yaml: document 1: ") && e.contains("items"), "{e}");
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
}
