//! How pitrguard logs: the tracing subscriber, and the JSON line it writes.
//!
//! The JSON line is written here rather than by tracing-subscriber's `.json()` formatter, which
//! goes through serde's map serializer and an adaptor that checks every fragment as UTF-8 again:
//! under callgrind the per-decision line cost about as much as the decision itself (~25 000
//! instructions of ~125 000 per request; BENCHMARKS.md, "request-instructions"). The line has
//! the shape `.json().flatten_event(true)` gives an event outside any span (pitrguard opens
//! none): `{"timestamp":…,"level":…,"message":…,<fields in order>,"target":…}`; the unit tests
//! compare the two formatters on the same events.

use std::fmt::{self, Write as _};
use std::io::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

mod writer;

pub use writer::Guard;

/// The writer of [`init`], for [`write_out`].
static WRITER: std::sync::OnceLock<writer::Batched> = std::sync::OnceLock::new();

/// Writes the log lines queued so far. For a `process::exit`, which skips the guard of [`init`].
pub fn write_out() {
    if let Some(writer) = WRITER.get() {
        writer.write_out();
    }
}

/// Logs go to stderr; `PITRGUARD_LOG_FORMAT=json` for one JSON object per line,
/// `RUST_LOG` for the level (default `default_level`).
///
/// A line is formatted where it is logged and written to stderr by a thread of its own, in
/// batches (`writer.rs`), so a request never waits on the write (the per-decision line cost the
/// webhook ~20% of its requests/s when written in place). Lines are not dropped. The guard
/// writes what is left when dropped.
pub fn init(default_level: &str) -> std::io::Result<Guard> {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let (writer, guard) = writer::spawn(std::io::stderr())?;
    let _ = WRITER.set(writer.clone());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::stderr().is_terminal());
    if std::env::var("PITRGUARD_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.event_format(JsonLine).init();
    } else {
        builder.init();
    }
    Ok(guard)
}

/// One event as one line of JSON (see the module's documentation).
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLine;

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let mut line = Vec::with_capacity(320);
        line.extend_from_slice(b"{\"timestamp\":\"");
        push_timestamp(&mut line, chrono::Utc::now());
        line.extend_from_slice(b"\",\"level\":\"");
        line.extend_from_slice(event.metadata().level().as_str().as_bytes());
        line.push(b'"');
        event.record(&mut Fields { line: &mut line, scratch: String::new() });
        line.extend_from_slice(b",\"target\":");
        push_str(&mut line, event.metadata().target());
        line.extend_from_slice(b"}\n");
        writer.write_str(std::str::from_utf8(&line).map_err(|_| fmt::Error)?)
    }
}

/// `t` as tracing-subscriber's JSON formatter writes it (RFC 3339, UTC, microseconds), written by
/// hand as the core writes its times: chrono's `to_rfc3339_opts` allocates and works the date out
/// field by field, on every line.
fn push_timestamp(line: &mut Vec<u8>, t: chrono::DateTime<chrono::Utc>) {
    let mut text = String::with_capacity(27);
    crate::core::time::push_time(&mut text, t);
    text.pop(); // the `Z`
    let _ = write!(text, ".{:06}Z", t.timestamp_subsec_micros());
    line.extend_from_slice(text.as_bytes());
}

/// Appends `,"name":value` for each field, in the order the event gives them.
struct Fields<'a> {
    line: &'a mut Vec<u8>,
    /// For values that are formatted before they are escaped.
    scratch: String,
}

impl Fields<'_> {
    fn key(&mut self, field: &Field) {
        self.line.push(b',');
        push_str(self.line, field.name());
        self.line.push(b':');
    }

    fn number(&mut self, field: &Field, value: impl fmt::Display) {
        self.key(field);
        let _ = write!(self.line, "{value}");
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        push_str(self.line, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.line.extend_from_slice(if value { b"true" } else { b"false" });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.number(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.number(field, value);
    }

    // 128-bit integers: the default, a string (as tracing-subscriber's JSON formatter writes them).

    fn record_f64(&mut self, field: &Field, value: f64) {
        // As serde_json writes it: a float that is not finite is null.
        match serde_json::Number::from_f64(value) {
            Some(n) => self.number(field, n),
            None => {
                self.key(field);
                self.line.extend_from_slice(b"null");
            }
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.scratch.clear();
        let _ = write!(self.scratch, "{value:?}");
        self.key(field);
        push_str(self.line, &self.scratch);
    }
}

use crate::json_text::push_str;

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use serde_json::Value;
    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    /// Lines written by a subscriber, kept in memory.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Lines {
        type Writer = Lines;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    /// Every kind of field pitrguard logs, and text that needs escaping.
    fn events() {
        let error = std::io::Error::other("disk \"full\"\n");
        tracing::info!(
            uid = %"705ab4f5-6393-11e8-b7cc-42010a800002",
            namespace = "demo",
            operation = "CREATE",
            dry_run = false,
            allowed = true,
            latency_us = 102u64,
            offset = -3i64,
            big = u128::MAX,
            ratio = 0.25f64,
            nan = f64::NAN,
            path = ?std::path::Path::new("/tmp/a b"),
            "admission decision"
        );
        tracing::warn!(error = &error as &dyn std::error::Error, "a message with \"quotes\", \\, \t and \u{1}");
        tracing::error!(text = "ünïcødé ✓ \u{7f}", "plain");
        tracing::debug!("no fields");
    }

    /// The top-level keys of a line, in the order they are written.
    fn keys(line: &str) -> Vec<String> {
        let map: serde_json::Map<String, Value> = serde_json::from_str(line).unwrap();
        let mut keys: Vec<(usize, String)> =
            map.keys().map(|k| (line.find(&format!("\"{k}\":")).unwrap(), k.clone())).collect();
        keys.sort();
        keys.into_iter().map(|(_, k)| k).collect()
    }

    fn lines(ours: bool) -> Vec<String> {
        let out = Lines::default();
        let builder = tracing_subscriber::fmt().with_writer(out.clone()).with_max_level(tracing::Level::DEBUG);
        if ours {
            tracing::subscriber::with_default(builder.event_format(JsonLine).finish(), events);
        } else {
            tracing::subscriber::with_default(builder.json().flatten_event(true).finish(), events);
        }
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn the_timestamp_is_what_chrono_writes() {
        let mut t: chrono::DateTime<chrono::Utc> = "1970-01-01T00:00:00Z".parse().unwrap();
        while t.timestamp() < 4_102_444_800 {
            let mut line = Vec::new();
            push_timestamp(&mut line, t);
            assert_eq!(String::from_utf8(line).unwrap(), t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
            t += chrono::TimeDelta::seconds(86_399 * 7 + 13) + chrono::TimeDelta::nanoseconds(123_456_789);
        }
    }

    #[test]
    fn a_line_is_what_tracing_subscribers_json_formatter_writes_but_for_the_time() {
        let (ours, theirs) = (lines(true), lines(false));
        assert_eq!(ours.len(), 4, "{ours:?}");
        assert_eq!(ours.len(), theirs.len());
        for (ours, theirs) in ours.iter().zip(&theirs) {
            let (mut a, mut b): (Value, Value) =
                (serde_json::from_str(ours).unwrap(), serde_json::from_str(theirs).unwrap());
            // Both are RFC 3339 in microseconds and UTC; they differ only by when they were taken.
            for v in [&a, &b] {
                let t = v["timestamp"].as_str().unwrap();
                assert!(t.len() == 27 && t.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(t).is_ok(), "{t}");
            }
            a["timestamp"] = Value::Null;
            b["timestamp"] = Value::Null;
            assert_eq!(a, b);
            // The same keys in the same order (serde_json's Map sorts them, so compare the text).
            assert_eq!(keys(ours), keys(theirs), "{ours}\n{theirs}");
        }
        assert!(ours[0].contains(r#""latency_us":102,"offset":-3,"big":"340282366920938463463374607431768211455","ratio":0.25,"nan":null"#), "{}", ours[0]);
    }
}
