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
    let (mut list, mut items_at_column_0, mut after_items, mut after_kind) = (false, false, false, false);
    let mut keys = std::collections::HashSet::new();
    let mut open = OpenAtLineEnd::default();
    for (i, line) in lines(path)?.enumerate() {
        let Ok(line) = line else { return Ok(false) }; // e.g. not UTF-8: the general reader says so
        if !open.read(&line) || holds_another_break(&line) {
            return Ok(false);
        }
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
        // The kind is read from its own line; an indented line after it (comments aside) goes on
        // with it, as a plain scalar's next line (found by fuzz/fuzz_targets/loader.rs): whole.
        if after_kind && !line.trim().is_empty() && !line.trim_start().starts_with('#') {
            if !in_first_column(&line) {
                return Ok(false);
            }
            after_kind = false;
        }
        if after_items && !line.trim().is_empty() && !line.starts_with('#') {
            items_at_column_0 = line == "-" || line.starts_with("- ");
            after_items = false;
        }
        if line.trim_end() == "items:" {
            after_items = true;
        } else if let Some(kind) = line.strip_prefix("kind:") {
            list = is_list(plain_word(kind));
            after_kind = true;
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
        let column_0 = in_first_column(&line);
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
    // Into a Value, as the whole read parses it: a tag, say, is an error there (found by fuzzing).
    serde_yaml::from_str::<serde_json::Value>(&rest)
        .map_err(|e| LoadError::new(Origin { file: name.into(), document: 1, item: None }, e).streaming(name))?;
    Ok(true)
}

/// The text of a Backup entry of a List in kubectl's layout without what the index does not read
/// of it: `metadata.managedFields`, and the value of the `kubeblocks.io/cluster-snapshot`
/// annotation (an empty string stands in; that the annotation is there is read). Together they are
/// most of a Backup's text, and libyaml reads a byte at a time. `None`: not such an entry, or
/// nothing to take out.
///
/// Lines are taken out only where no quoted scalar, flow collection or block scalar is open (the
/// same lexer as pass 1's), so a line inside a scalar is never mistaken for a key. What is taken
/// out is not parsed: an error there goes unreported, as the index reads nothing of it. The
/// caller parses the whole entry when what is left does not parse (an anchor taken out, say).
pub(super) fn without_unread_parts(entry: &str) -> Option<String> {
    if !(entry.starts_with("- ") && (entry.contains("\n  kind: Backup\n") || entry.starts_with("- kind: Backup\n"))) {
        return None;
    }
    const SNAPSHOT: &str = "      kubeblocks.io/cluster-snapshot:";
    let mut out = String::with_capacity(entry.len() / 2);
    let mut open = OpenAtLineEnd::default();
    // The last key at indentation 2 (the entry's fields) and 4 (metadata's), as whole lines.
    let (mut in_metadata, mut in_annotations) = (false, false);
    // While taking out: the taken key's indentation, and whether entries of a sequence at that
    // indentation are its value (kubectl writes a sequence at its key's indentation).
    let mut taking: Option<(usize, bool)> = None;
    let (mut took, mut backup) = (false, false);
    for (i, line) in entry.split_inclusive('\n').enumerate() {
        let text = line.strip_suffix('\n').unwrap_or(line);
        let indent = if i == 0 { 2 } else { text.bytes().take_while(|&b| b == b' ').count() };
        let rest = if i == 0 { &text[2..] } else { &text[indent..] };
        if rest.starts_with('\t') {
            return None; // a tab where indentation could continue: not kubectl's layout
        }
        let inside = open.continues_into(text);
        open.read(text);
        if let Some((at, sequence)) = taking {
            let blank = rest.trim().is_empty() || rest.starts_with('#');
            if inside || blank || indent > at || sequence && indent == at && (rest == "-" || rest.starts_with("- ")) {
                continue;
            }
            taking = None;
        }
        if inside {
            out.push_str(line);
            continue;
        }
        if indent == 2 {
            in_metadata = rest == "metadata:";
            in_annotations = false;
            // The entry's own kind (the last one, as the whole read takes a repeated key), not a
            // line inside a scalar that looks like it.
            if let Some(kind) = rest.strip_prefix("kind:") {
                backup = kind.trim() == "Backup";
            }
        } else if indent == 4 && in_metadata {
            in_annotations = rest == "annotations:";
            if rest == "managedFields:" {
                (taking, took) = (Some((4, true)), true);
                continue;
            }
        } else if indent == 6
            && in_annotations
            && text.strip_prefix(SNAPSHOT).is_some_and(|v| v.is_empty() || v.starts_with(' '))
        {
            out.push_str(SNAPSHOT);
            out.push_str(" \"\"\n");
            (taking, took) = (Some((6, false)), true);
            continue;
        }
        out.push_str(line);
    }
    // Something opened in what was taken out and never closed: the entry as it is.
    (backup && took && open.is_closed()).then_some(out)
}

/// Whether `value` is one double-quoted scalar that ends at the end of the line: it starts with a
/// quote and ends with one that no backslash escapes. Where a quote inside ends the scalar
/// earlier, what follows is a comment (nothing stays open either) or not valid YAML.
fn closed_double_quoted(value: &[u8]) -> bool {
    let v = value.trim_ascii();
    v.len() >= 2
        && v[0] == b'"'
        && v[v.len() - 1] == b'"'
        && v[1..v.len() - 1].iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 0
}

/// Whether `line` starts an entry or a top-level key, as pass 2 cuts the file: not empty, not
/// indented, not a comment. Pass 1's lexer asks the same question, so the two cannot disagree.
fn in_first_column(line: &str) -> bool {
    !line.is_empty() && !line.starts_with([' ', '\t', '#'])
}

/// Whether a line, as `BufRead::lines` cuts them (at `\n` and `\r\n`), holds a line break of
/// libyaml's that it does not cut at: a lone `\r`, NEL, LS or PS. Pass 2 would keep such a line
/// whole where the whole read starts a new one (`- ` after it is another entry, say): the file
/// is read whole (found by fuzz/fuzz_targets/loader.rs). kubectl writes none of them.
fn holds_another_break(line: &str) -> bool {
    let b = line.as_bytes();
    // In UTF-8, NEL is C2 85, LS E2 80 A8 and PS E2 80 A9.
    memchr::memchr3_iter(b'\r', 0xC2, 0xE2, b).any(|i| match b[i] {
        b'\r' => true,
        0xC2 => b.get(i + 1) == Some(&0x85),
        _ => b.get(i + 1) == Some(&0x80) && matches!(b.get(i + 2), Some(0xA8 | 0xA9)),
    })
}

/// A value that is one word, bare or in one pair of quotes, as kubectl writes a `kind`; `None`
/// for anything YAML could read otherwise (`&List` is an anchor on an empty value, say: found by
/// fuzz/fuzz_targets/loader.rs).
fn plain_word(value: &str) -> Option<&str> {
    let value = value.trim();
    let word =
        ['"', '\''].iter().find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q))).unwrap_or(value);
    (!word.is_empty() && word.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(word)
}

/// Whether a quoted scalar or a flow collection is still open at the end of a line. libyaml lets
/// one run on into a line in the first column (the YAML spec does not), where pass 2 would cut
/// an item in two: such a file is read whole (found by fuzz/fuzz_targets/loader.rs).
///
/// Only what decides that is lexed: quotes and brackets where a scalar can start, comments, and
/// block scalars, whose content (quotes included) is skipped by its indentation. Continuation
/// lines of a plain scalar are not told apart: one that starts with a quote or bracket that the
/// item never closes makes the file read whole, which is right, only slower.
#[derive(Debug, Default)]
struct OpenAtLineEnd {
    /// `'` or `"` while a quoted scalar is open.
    quote: Option<u8>,
    /// Depth of open `[` and `{`.
    flow: usize,
    /// While in a block scalar (`|`, `>`): its content is indented deeper than this column.
    block: Option<usize>,
}

impl OpenAtLineEnd {
    /// Reads the next line; `false` when it starts in the first column (as pass 2 sees it)
    /// inside a quoted scalar or a flow collection.
    fn read(&mut self, text: &str) -> bool {
        let line = text.as_bytes();
        let indent = line.iter().take_while(|&&b| b == b' ').count();
        let blank = line[indent..].iter().all(u8::is_ascii_whitespace);
        if let Some(parent) = self.block {
            if blank || indent > parent {
                return true;
            }
            self.block = None;
        }
        if self.quote.is_some() || self.flow > 0 {
            if in_first_column(text) {
                return false;
            }
        } else if blank {
            return true;
        }
        self.lex(line);
        true
    }

    /// Whether `text`, the next line, continues a quoted scalar, flow collection or block scalar
    /// opened on an earlier one.
    fn continues_into(&self, text: &str) -> bool {
        let line = text.as_bytes();
        let indent = line.iter().take_while(|&&b| b == b' ').count();
        let blank = line[indent..].iter().all(u8::is_ascii_whitespace);
        self.quote.is_some() || self.flow > 0 || self.block.is_some_and(|parent| blank || indent > parent)
    }

    /// Nothing is open at the end of the last line read.
    fn is_closed(&self) -> bool {
        self.quote.is_none() && self.flow == 0
    }

    fn lex(&mut self, line: &[u8]) {
        #[derive(Clone, Copy)]
        enum After {
            Colon,
            Dash,
            Other,
        }
        // Most lines of a List open nothing: no bytes that could, outside a quote or a flow.
        let opens = |b: &u8| matches!(b, b'\'' | b'"' | b'[' | b'{' | b'|' | b'>');
        if self.quote.is_none() && self.flow == 0 && !line.iter().any(opens) {
            return;
        }
        // A key and a double-quoted value that closes at the line's end, as kubectl writes a long
        // annotation (the Backups' cluster snapshot, some 2 KB of escaped JSON): nothing stays open.
        if self.quote.is_none()
            && self.flow == 0
            && let Some(at) = memchr::memmem::find(line, b": \"")
            && !line[..at].iter().any(|b| opens(b) || *b == b'#')
            && closed_double_quoted(&line[at + 2..])
        {
            return;
        }
        // `start`: a scalar or collection may begin here (at a line's start, or after `- `,
        // `: `, `? `, `[`, `{`, `,` or a tag/anchor).
        let (mut start, mut token, mut key, mut dash, mut after) = (true, 0, 0, 0, After::Other);
        let space_or_end = |i: usize| line.get(i).is_none_or(|b| *b == b' ' || *b == b'\t');
        let mut i = 0;
        while i < line.len() {
            match self.quote {
                Some(b'\'') => {
                    let Some(at) = memchr::memchr(b'\'', &line[i..]) else { return };
                    i += at + 1;
                    if line.get(i) == Some(&b'\'') {
                        i += 1; // '' is a quote inside the scalar
                    } else {
                        (self.quote, start) = (None, false);
                    }
                    continue;
                }
                Some(_) => {
                    let Some(at) = memchr::memchr2(b'"', b'\\', &line[i..]) else { return };
                    i += at;
                    if line[i] == b'"' {
                        (self.quote, start) = (None, false);
                    }
                    i += if line[i] == b'\\' { 2 } else { 1 };
                    continue;
                }
                None => {}
            }
            let b = line[i];
            match b {
                b' ' | b'\t' => {}
                b'#' if i == 0 || line[i - 1] == b' ' || line[i - 1] == b'\t' => return, // a comment
                b'\'' | b'"' if start => {
                    (self.quote, token, start) = (Some(b), i, false);
                }
                b'[' | b'{' if start => {
                    self.flow += 1;
                }
                b']' | b'}' if self.flow > 0 => {
                    self.flow -= 1;
                    start = false;
                }
                b',' if self.flow > 0 => start = true,
                b':' if self.flow > 0 || space_or_end(i + 1) => {
                    (key, after, start) = (token, After::Colon, true);
                }
                b'-' | b'?' if start && self.flow == 0 && space_or_end(i + 1) => {
                    (dash, after) = (i, After::Dash);
                }
                b'|' | b'>' if start && self.flow == 0 => {
                    // Content lies deeper than the key's column, or the entry's dash.
                    self.block = Some(match after {
                        After::Colon => key,
                        After::Dash => dash,
                        After::Other => i,
                    });
                    return;
                }
                b'!' | b'&' if start => {
                    while i + 1 < line.len() && !space_or_end(i + 1) {
                        i += 1;
                    }
                }
                _ => {
                    if start {
                        token = i;
                    }
                    start = false;
                }
            }
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{OpenAtLineEnd, without_unread_parts};
    use serde_json::Value;

    fn entry_value(text: &str) -> Value {
        let mut entries: Vec<Value> = serde_yaml::from_str(text).unwrap_or_else(|e| panic!("{e}:\n{text}"));
        entries.remove(0)
    }

    /// The entry read without its unread parts is the entry read whole, less managedFields and
    /// with an empty snapshot value.
    fn same_but_unread_parts(entry: &str) -> String {
        let slim = without_unread_parts(entry).expect("something taken out");
        let mut whole = entry_value(entry);
        let meta = whole["metadata"].as_object_mut().expect("metadata");
        meta.remove("managedFields");
        if let Some(snapshot) = meta.get_mut("annotations").and_then(|a| a.get_mut("kubeblocks.io/cluster-snapshot")) {
            *snapshot = Value::from("");
        }
        assert_eq!(entry_value(&slim), whole, "{slim}");
        slim
    }

    const BACKUP: &str = r#"- apiVersion: dataprotection.kubeblocks.io/v1alpha1
  kind: Backup
  metadata:
    annotations:
      dataprotection.kubeblocks.io/target-pod-name: pg-0
      kubeblocks.io/cluster-snapshot: "{\"spec\":{\"backup\":{\"cronExpression\":\"0 18 * * *\"}},\"x\":\"\\\\\"}"
      z: after
    labels:
      dataprotection.kubeblocks.io/backup-type: Continuous
    managedFields:
    - apiVersion: dataprotection.kubeblocks.io/v1alpha1
      fieldsV1:
        "f:metadata":
          "f:annotations":
            ".": {}
      manager: dataprotection
      time: "2024-05-07T00:00:00Z"
    - manager: other
    name: wal
    namespace: demo
  spec:
    backupMethod: archive-wal
  status:
    phase: Running
"#;

    #[test]
    fn a_backup_is_read_without_its_managed_fields_and_snapshot_value() {
        let slim = same_but_unread_parts(BACKUP);
        assert!(!slim.contains("managedFields") && !slim.contains("cronExpression"), "{slim}");
        assert!(slim.contains("      kubeblocks.io/cluster-snapshot: \"\"\n      z: after\n"), "{slim}");
        // The snapshot as a block scalar, and as a quoted scalar over several lines.
        let block = BACKUP.replace(
            r#"kubeblocks.io/cluster-snapshot: "{"#,
            "kubeblocks.io/cluster-snapshot: |\n        {\n        x: y\n        \"{",
        );
        assert!(same_but_unread_parts(&block).contains("cluster-snapshot: \"\"\n      z: after\n"));
        let lines = BACKUP.replace(r#"cluster-snapshot: "{"#, "cluster-snapshot: \"one\n\n  z: not a key\n        {");
        assert!(same_but_unread_parts(&lines).contains("cluster-snapshot: \"\"\n      z: after\n"));
    }

    #[test]
    fn only_a_backup_in_kubectls_layout_has_parts_taken_out() {
        assert_eq!(without_unread_parts(&BACKUP.replace("kind: Backup", "kind: OpsRequest")), None);
        // "kind: Backup" inside a scalar of an OpsRequest.
        let quoted = BACKUP.replace("  kind: Backup\n", "  kind: OpsRequest\n  x: \"a\n  kind: Backup\n  \"\n");
        assert_eq!(entry_value(&quoted)["kind"], "OpsRequest");
        assert_eq!(without_unread_parts(&quoted), None);
        assert_eq!(without_unread_parts(&BACKUP.replace("  kind: Backup\n", "")), None);
        // Nothing unread in it.
        let bare = "- kind: Backup\n  metadata:\n    name: a\n";
        assert_eq!(without_unread_parts(bare), None);
        // managedFields elsewhere than in metadata is read.
        assert_eq!(without_unread_parts("- kind: Backup\n  spec:\n    managedFields:\n    - a\n"), None);
        // A tab where indentation could go on.
        assert_eq!(without_unread_parts(&BACKUP.replace("    name: wal", "    name: wal\n\t")), None);
    }

    #[test]
    fn a_line_inside_a_scalar_is_not_taken_for_a_key() {
        // libyaml reads the quoted name on over the lines that look like keys.
        let entry = "- kind: Backup\n  metadata:\n    name: \"a\n    managedFields:\n    - b\"\n    namespace: x\n";
        assert_eq!(entry_value(entry)["metadata"]["name"], "a managedFields: - b");
        assert_eq!(without_unread_parts(entry), None);
        let slim = same_but_unread_parts(&format!("{entry}    managedFields:\n    - c\n"));
        assert!(slim.contains("managedFields:\n    - b"), "{slim}");
    }

    #[test]
    fn a_snapshot_left_open_keeps_the_entry_whole() {
        let open = "- kind: Backup\n  metadata:\n    annotations:\n      kubeblocks.io/cluster-snapshot: \"{\n";
        assert_eq!(without_unread_parts(open), None);
    }

    /// Whether pass 1 would stream these lines, as far as open scalars decide.
    fn streams(text: &str) -> bool {
        let mut open = OpenAtLineEnd::default();
        text.lines().all(|line| open.read(line))
    }

    #[test]
    fn a_quoted_scalar_or_flow_collection_running_on_into_the_first_column_is_not_streamed() {
        assert!(!streams("- a: 'one\ntwo'\n"));
        assert!(!streams("- a: \"one\\\"\ntwo\"\n"));
        assert!(!streams("- a: [1,\n2]\n"));
        assert!(!streams("- a: {b: 'it''s\nkind: List'}\n"));
        assert!(!streams("- !!str 'one\n\n- two'\n"));
    }

    #[test]
    fn what_kubectl_writes_is_streamed() {
        assert!(streams("- a: 'one\n  two'\n- b: it's\n- c: \"x\" # it's\n- d: ['x', {e: \"]\"}]\nkind: List\n"));
        assert!(streams("- a: '#not a comment'\n- b: x#y'\nitems:\n"));
        // Quotes inside block scalars are content, however the block is introduced.
        assert!(streams("- a: |\n    it's\n  b: >-\n   \"x\nkind: List\n"));
        assert!(streams("- - |\n   'x\n- k: |2\n   '\n\n   y\nc: d\n"));
        assert!(streams("metadata:\n  resourceVersion: \"\"\n"));
    }

    #[test]
    fn a_kind_is_a_list_only_when_it_is_one_plain_word() {
        use super::plain_word;
        for (value, word) in
            [(" List", Some("List")), (" \"BackupList\" ", Some("BackupList")), (" 'List'", Some("List"))]
        {
            assert_eq!(plain_word(value), word, "{value}");
        }
        for value in [" &List", " !!str List", " *List", " \"List", " 'List\"", " List # c", " ''", " "] {
            assert_eq!(plain_word(value), None, "{value}");
        }
    }

    #[test]
    fn a_line_break_that_lines_do_not_cut_at_is_found() {
        use super::holds_another_break;
        for line in ["- a\rb", "a\r", "- a\u{85}- b", "x: \u{2028}", "\u{2029}y"] {
            assert!(holds_another_break(line), "{line:?}");
        }
        // Other characters that share a first byte with NEL, LS or PS are no breaks.
        for line in ["- name: caf\u{e9}", "- a: \u{a0}\u{2027}\u{202a}\u{20ac}", "plain", ""] {
            assert!(!holds_another_break(line), "{line:?}");
        }
    }

    #[test]
    fn a_block_scalar_ends_where_its_indentation_does() {
        assert!(!streams("- a: |\n    x\n  b: 'y\nc'\n"));
    }
}
