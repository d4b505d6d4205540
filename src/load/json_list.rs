//! Streaming the items of a JSON `kind: List` (`kubectl get -o json`).
//!
//! serde_json reading from a `Read` goes byte by byte through its position tracking, which made
//! the reader thread, not the decoders, the bottleneck. This scanner walks the List's skeleton
//! over a buffered file instead: it only finds where each item begins and ends (strings and
//! nesting), and hands the item's text on. Every item is then parsed by serde_json, and the
//! List's other fields (`apiVersion`, `kind`, `metadata`) are parsed here, so nothing in the
//! file goes unchecked.

use std::io::BufRead;
use std::path::Path;

use serde::de::IgnoredAny;

use super::{LoadError, Origin, Sink, Unit, is_list, open_buffered};

/// A JSON file whose top-level `kind` ends in `List`: streams its `items`. Two passes over the
/// file, because `kubectl get -o json` writes `items` before `kind`. `false`: not such a file
/// (or not valid JSON: the whole-file read then says where).
pub(super) fn stream(path: &Path, name: &str, sink: &mut Sink<'_>) -> Result<bool, LoadError> {
    let origin = |item| Origin { file: name.into(), document: 1, item };
    let Ok(kind) = Scanner::new(open_buffered(path)?).top_level(&mut |_, _| Ok(()), false) else {
        return Ok(false);
    };
    if !is_list(kind.as_deref()) {
        return Ok(false);
    }
    let mut scanner = Scanner::new(open_buffered(path)?);
    let mut emit = |n: usize, text: String| sink(Unit::JsonItem { origin: origin(Some(n)), text });
    match scanner.top_level(&mut emit, true) {
        Ok(_) => Ok(true),
        Err(Stop::Sink(e)) => Err(e),
        Err(Stop::Syntax(message)) => {
            Err(LoadError::new(origin(None), format!("{message} at line {}", scanner.line)).streaming(name))
        }
    }
}

/// serde_json skips a string it ignores without checking its bytes: the whole-file read
/// refuses a file that is not UTF-8 anywhere, and so must this one.
fn utf8<'a>(bytes: &'a [u8], what: &str) -> Result<&'a str, Stop> {
    std::str::from_utf8(bytes).map_err(|e| Stop::Syntax(format!("{what}: not UTF-8: {e}")))
}

enum Stop {
    /// The file is not the JSON it should be.
    Syntax(String),
    /// The sink refused an item.
    Sink(LoadError),
}

impl From<String> for Stop {
    fn from(message: String) -> Self {
        Stop::Syntax(message)
    }
}

struct Scanner<R> {
    reader: R,
    /// 1-based, for messages.
    line: usize,
}

impl<R: BufRead> Scanner<R> {
    fn new(reader: R) -> Self {
        Self { reader, line: 1 }
    }

    fn peek(&mut self) -> Result<Option<u8>, Stop> {
        let buf = self.reader.fill_buf().map_err(|e| Stop::Syntax(e.to_string()))?;
        Ok(buf.first().copied())
    }

    fn bump(&mut self) -> Result<Option<u8>, Stop> {
        let b = self.peek()?;
        if let Some(b) = b {
            self.reader.consume(1);
            self.line += usize::from(b == b'\n');
        }
        Ok(b)
    }

    fn skip_whitespace(&mut self) -> Result<Option<u8>, Stop> {
        while let Some(b) = self.peek()? {
            if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                return Ok(Some(b));
            }
            self.bump()?;
        }
        Ok(None)
    }

    fn expect(&mut self, want: u8) -> Result<(), Stop> {
        match self.skip_whitespace()? {
            Some(b) if b == want => {
                self.bump()?;
                Ok(())
            }
            Some(b) => Err(format!("expected `{}`, found `{}`", want as char, b as char).into()),
            None => Err(format!("expected `{}`, found the end of the file", want as char).into()),
        }
    }

    /// Copies one JSON value into `out` (or skips it): a string, an object or array (balanced,
    /// strings respected), or a number or literal. What is inside is checked by whoever parses it.
    fn value(&mut self, mut out: Option<&mut Vec<u8>>) -> Result<(), Stop> {
        if self.skip_whitespace()?.is_none() {
            return Err("expected a value, found the end of the file".to_string().into());
        }
        let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
        loop {
            // Whole buffers are scanned and copied at once; inside a string, memchr jumps to the
            // next quote or backslash (most of a Backup's bytes are in strings).
            let buf = self.reader.fill_buf().map_err(|e| Stop::Syntax(e.to_string()))?;
            if buf.is_empty() {
                return Err("unexpected end of the file inside a value".to_string().into());
            }
            let (mut used, mut done) = (0, false);
            while used < buf.len() && !done {
                if in_string {
                    if escaped {
                        escaped = false;
                        used += 1;
                        continue;
                    }
                    let Some(at) = memchr::memchr2(b'"', b'\\', &buf[used..]) else {
                        used = buf.len();
                        break;
                    };
                    used += at + 1;
                    if buf[used - 1] == b'\\' {
                        escaped = true;
                    } else {
                        in_string = false;
                        done = depth == 0;
                    }
                    continue;
                }
                let b = buf[used];
                used += 1;
                match b {
                    b'"' => in_string = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' if depth > 0 => {
                        depth -= 1;
                        done = depth == 0;
                    }
                    // A number or literal ends before the byte after it, which is left for the caller.
                    b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r' if depth == 0 => {
                        used -= 1;
                        done = true;
                    }
                    _ => {}
                }
            }
            if let Some(out) = out.as_deref_mut() {
                out.extend_from_slice(&buf[..used]);
            }
            self.line += memchr::memchr_iter(b'\n', &buf[..used]).count();
            self.reader.consume(used);
            if done {
                return Ok(());
            }
        }
    }

    /// The top-level object: returns its `kind`. With `items`, each element of its `items`
    /// array is handed to `emit` (1-based index, text); without, `items` is skipped unread.
    fn top_level(
        &mut self,
        emit: &mut dyn FnMut(usize, String) -> Result<(), LoadError>,
        items: bool,
    ) -> Result<Option<String>, Stop> {
        self.expect(b'{')?;
        let mut kind = None;
        let mut buf = Vec::new();
        if self.skip_whitespace()? == Some(b'}') {
            self.bump()?;
        } else {
            loop {
                buf.clear();
                self.value(Some(&mut buf))?;
                let key: String = serde_json::from_str(utf8(&buf, "a key")?).map_err(|e| format!("a key: {e}"))?;
                self.expect(b':')?;
                if key == "items" && items {
                    self.items(emit)?;
                } else if key == "items" {
                    self.value(None)?; // the first pass only looks for `kind`
                } else {
                    buf.clear();
                    self.value(Some(&mut buf))?;
                    if items || key == "kind" {
                        let text = utf8(&buf, &key)?;
                        serde_json::from_str::<IgnoredAny>(text).map_err(|e| format!("{key}: {e}"))?;
                        if key == "kind" {
                            kind = serde_json::from_str::<String>(text).ok();
                        }
                    }
                }
                match self.skip_whitespace()? {
                    Some(b',') => {
                        self.bump()?;
                    }
                    Some(b'}') => {
                        self.bump()?;
                        break;
                    }
                    _ => return Err("expected `,` or `}` after a field of the List".to_string().into()),
                }
            }
        }
        if self.skip_whitespace()?.is_some() {
            return Err("trailing characters after the List".to_string().into());
        }
        Ok(kind)
    }

    /// `items`: `null`, or an array whose elements go to `emit` one by one.
    fn items(&mut self, emit: &mut dyn FnMut(usize, String) -> Result<(), LoadError>) -> Result<(), Stop> {
        match self.skip_whitespace()? {
            Some(b'[') => {
                self.bump()?;
            }
            Some(b'n') => {
                let mut buf = Vec::new();
                self.value(Some(&mut buf))?;
                return match buf.as_slice() {
                    b"null" => Ok(()),
                    _ => Err("items: not an array of objects".to_string().into()),
                };
            }
            _ => return Err("items: not an array of objects".to_string().into()),
        }
        if self.skip_whitespace()? == Some(b']') {
            self.bump()?;
            return Ok(());
        }
        for n in 1.. {
            let mut item = Vec::with_capacity(8 * 1024);
            self.value(Some(&mut item))?;
            let text = String::from_utf8(item).map_err(|e| format!("item {n}: not UTF-8: {e}"))?;
            emit(n, text).map_err(Stop::Sink)?;
            match self.skip_whitespace()? {
                Some(b',') => {
                    self.bump()?;
                }
                Some(b']') => {
                    self.bump()?;
                    return Ok(());
                }
                _ => return Err(format!("expected `,` or `]` after item {n}").into()),
            }
        }
        unreachable!("the loop returns")
    }
}
