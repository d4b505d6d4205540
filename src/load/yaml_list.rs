//! Streaming the entries of a YAML List as `kubectl get -o yaml` writes it.

use std::io::BufRead;
use std::path::Path;

use super::{LoadError, Origin, Sink, Unit, is_list, open_buffered};

/// A YAML file that is one List document as `kubectl get -o yaml` writes it (a top-level
/// `kind: ...List`, and `items:` whose entries start with `- ` in the first column): streams
/// its items, each parsed on its own. `false`: any other file, read whole instead.
///
/// An entry ends at the next line that is neither empty, nor indented, nor a comment: YAML
/// keeps everything inside an entry indented, block scalars included.
pub(super) fn stream(path: &Path, name: &str, sink: &mut Sink<'_>) -> Result<bool, LoadError> {
    let lines = |path: &Path| -> Result<_, LoadError> {
        let name = name.to_string();
        Ok(open_buffered(path)?.lines().map(move |l| l.map_err(|e| LoadError::new(&name, e))))
    };
    // Pass 1: is this one document with a top-level `kind: ...List` and column-0 items?
    let (mut list, mut items_at_column_0, mut after_items) = (false, false, false);
    let mut keys = std::collections::HashSet::new();
    for (i, line) in lines(path)?.enumerate() {
        let Ok(line) = line else { return Ok(false) }; // e.g. not UTF-8: the general reader says so
        if line.starts_with("---") && i > 0 || line.starts_with("...") || line.starts_with('%') {
            return Ok(false); // several documents, or directives: the general reader
        }
        // A top-level key twice (two `items:`, say) is an error of the whole read, which the
        // streamed one would not see: the general reader.
        if let Some((key, _)) = line.split_once(':').filter(|_| !line.starts_with([' ', '\t', '#', '-']))
            && !keys.insert(key.to_string())
        {
            return Ok(false);
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
    // Pass 2: each entry's lines, parsed as a one-entry sequence. The lines of the List's other
    // fields (`apiVersion`, `kind`, `metadata`, ...) are kept and parsed at the end, so that a
    // broken one is an error here as in the whole read (found by fuzz/fuzz_targets/loader.rs).
    let (mut chunk, mut n, mut in_items, mut first_line) = (String::new(), 0usize, false, 0usize);
    let mut rest = String::new();
    let mut flush = |chunk: &mut String, n: usize, first_line: usize| -> Result<(), LoadError> {
        if chunk.is_empty() {
            return Ok(());
        }
        let origin = Origin { file: name.into(), document: 1, item: Some(n) };
        sink(Unit::YamlEntry { origin, text: std::mem::take(chunk), first_line })
    };
    for (i, line) in lines(path)?.enumerate() {
        let line = line?;
        let column_0 = !line.is_empty() && !line.starts_with([' ', '\t', '#']);
        if column_0 {
            flush(&mut chunk, n, first_line)?;
            // A sequence entry is an item only inside `items`; after another key it is that key's.
            let entry = in_items && (line == "-" || line.starts_with("- "));
            in_items = entry || line.trim_end() == "items:";
            if !entry {
                if !in_items {
                    rest.push_str(&line);
                    rest.push('\n');
                }
                continue;
            }
            n += 1;
            first_line = i + 1;
        }
        if in_items && (column_0 || !chunk.is_empty()) {
            chunk.push_str(&line);
            chunk.push('\n');
        } else if !in_items {
            rest.push_str(&line);
            rest.push('\n');
        }
    }
    flush(&mut chunk, n, first_line)?;
    serde_yaml::from_str::<serde::de::IgnoredAny>(&rest)
        .map_err(|e| LoadError::new(Origin { file: name.into(), document: 1, item: None }, e).streaming(name))?;
    Ok(true)
}
