//! Reading manifests and exported objects from files, directories and stdin
//! (multi-document YAML, JSON, `kind: List`), and building the file-backed
//! inventory from them. Every error names the file and the document.

use std::fmt;
use std::io::Read;
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

#[derive(Debug, Clone)]
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
    let mut seen = Seen::default();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).map_err(|e| LoadError::new("-", e))?;
            parse_text("-", &text, false, &mut docs)?;
            continue;
        }
        let meta = std::fs::metadata(path).map_err(|e| LoadError::new(path.display(), e))?;
        let files = if meta.is_dir() { walk(path, &mut seen)? } else { vec![path.clone()] };
        for file in files {
            if seen.first_visit(&file)? {
                read_file(&file, &mut docs)?;
            }
        }
    }
    Ok(docs)
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

fn read_file(path: &Path, docs: &mut Vec<Document>) -> Result<(), LoadError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| LoadError::new(&name, e))?;
    let text = String::from_utf8(bytes).map_err(|e| LoadError::new(&name, format!("not UTF-8: {e}")))?;
    let json = path.extension().is_some_and(|e| e == "json");
    parse_text(&name, &text, json, docs)
}

/// Splits `text` into documents: one JSON value, or a YAML stream.
pub fn parse_text(file: &str, text: &str, json: bool, docs: &mut Vec<Document>) -> Result<(), LoadError> {
    if json {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| LoadError::new(Origin { file: file.into(), document: 1, item: None }, e))?;
        push(file, 1, value, docs);
        return Ok(());
    }
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let origin = Origin { file: file.into(), document: i + 1, item: None };
        let value = Value::deserialize(doc).map_err(|e| LoadError::new(&origin, e))?;
        push(file, i + 1, value, docs);
    }
    Ok(())
}

/// Adds a document, or the items of a `kind: List`; empty documents are skipped.
fn push(file: &str, document: usize, value: Value, docs: &mut Vec<Document>) {
    let is_list = value.get("kind").and_then(Value::as_str).is_some_and(|k| k.ends_with("List"))
        && value.get("items").is_some_and(Value::is_array);
    if is_list {
        let Value::Array(items) = value["items"].clone() else { unreachable!("checked above") };
        for (i, item) in items.into_iter().enumerate() {
            docs.push(Document { origin: Origin { file: file.into(), document, item: Some(i + 1) }, value: item });
        }
    } else if !value.is_null() {
        docs.push(Document { origin: Origin { file: file.into(), document, item: None }, value });
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
    }
    Ok(index)
}

fn decode<T: serde::de::DeserializeOwned>(doc: &Document) -> Result<T, LoadError> {
    let kind = doc.value.get("kind").and_then(Value::as_str).unwrap_or("object");
    T::deserialize(&doc.value).map_err(|e| LoadError::new(&doc.origin, format!("invalid {kind}: {e}")))
}
