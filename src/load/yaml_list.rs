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
    use super::OpenAtLineEnd;

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
