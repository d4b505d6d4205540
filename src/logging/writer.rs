//! The thread that writes log lines, in batches.
//!
//! tracing-appender's non-blocking writer woke its thread for every line: under load, a futex
//! wake-up on the request path and a context switch per decision (its thread used 11% of the
//! webhook's CPU under h2load). Here a line is appended to a shared buffer, and the thread is
//! woken only when the buffer was empty; it then lets lines gather for [`GATHER`] before it takes
//! them, so under load one wake-up and one `write` carry many lines, while a quiet server's line
//! still appears within a few milliseconds.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the writer lets lines gather after the first one.
const GATHER: Duration = Duration::from_millis(2);
/// Bytes waiting to be written beyond which logging waits: no line is dropped.
const LIMIT: usize = 8 << 20;

#[derive(Default)]
struct State {
    lines: Vec<u8>,
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    /// The buffer is no longer empty, or the writer is closed.
    filled: Condvar,
    /// The writer took the buffer.
    drained: Condvar,
    /// Held while a batch is taken and written, so that batches reach it in the order taken.
    out: Mutex<Box<dyn Write + Send>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves whole lines behind: keep logging.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes what is queued and writes it; `taken` is an empty buffer to swap in.
    fn write_batch(&self, taken: &mut Vec<u8>) {
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::swap(&mut self.lock().lines, taken);
        self.drained.notify_all();
        // Nowhere to report a failed write of the log itself.
        let _ = out.write_all(taken).and_then(|()| out.flush());
        taken.clear();
    }
}

/// Where log lines go (a `MakeWriter` for tracing-subscriber); cheap to clone.
#[derive(Clone)]
pub struct Batched {
    shared: Arc<Shared>,
}

/// Writes what is left and stops the thread when dropped.
pub struct Guard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Starts the thread that writes to `out`.
pub fn spawn(out: impl Write + Send + 'static) -> io::Result<(Batched, Guard)> {
    let shared = Arc::new(Shared {
        state: Mutex::default(),
        filled: Condvar::new(),
        drained: Condvar::new(),
        out: Mutex::new(Box::new(out)),
    });
    let thread = {
        let shared = shared.clone();
        std::thread::Builder::new().name("pitrguard-log".into()).spawn(move || {
            let mut taken = Vec::new();
            loop {
                let mut state = shared.lock();
                while state.lines.is_empty() && !state.closed {
                    state = shared.filled.wait(state).unwrap_or_else(PoisonError::into_inner);
                }
                if state.lines.is_empty() {
                    return; // closed, and all written
                }
                let closed = state.closed;
                drop(state);
                if !closed {
                    std::thread::sleep(GATHER);
                }
                shared.write_batch(&mut taken);
            }
        })?
    };
    Ok((Batched { shared: shared.clone() }, Guard { shared, thread: Some(thread) }))
}

impl Batched {
    /// Writes what is queued now, on this thread: for a `process::exit`, which skips the guard.
    pub fn write_out(&self) {
        self.shared.write_batch(&mut Vec::new());
    }
}

impl Write for &Batched {
    /// Takes the bytes whole: tracing-subscriber hands over one line per call.
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut state = self.shared.lock();
        while state.lines.len() >= LIMIT && !state.closed {
            state = self.shared.drained.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
        let was_empty = state.lines.is_empty();
        state.lines.extend_from_slice(bytes);
        drop(state);
        if was_empty {
            self.shared.filled.notify_one();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Batched {
    type Writer = &'a Batched;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.filled.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Write` whose bytes and number of writes the test can read.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            let mut sink = self.0.lock().unwrap();
            sink.0.extend_from_slice(bytes);
            sink.1 += 1;
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_from_every_thread_is_written_whole_and_in_order_per_thread_before_the_guard_returns() {
        let sink = Sink::default();
        let (writer, guard) = spawn(sink.clone()).unwrap();
        std::thread::scope(|scope| {
            for t in 0..4 {
                let writer = writer.clone();
                scope.spawn(move || {
                    for i in 0..5_000 {
                        // One write per line, as tracing-subscriber writes.
                        let line = format!("thread {t} line {i:05} {}\n", "x".repeat(i % 97));
                        (&writer).write_all(line.as_bytes()).unwrap();
                    }
                });
            }
        });
        drop(guard);
        let (bytes, writes) = std::mem::take(&mut *sink.0.lock().unwrap());
        let text = String::from_utf8(bytes).unwrap();
        let mut next = [0usize; 4];
        for line in text.lines() {
            let mut words = line.split(' ');
            let t: usize = words.nth(1).unwrap().parse().unwrap();
            let i: usize = words.nth(1).unwrap().parse().unwrap();
            assert_eq!(i, next[t], "{line}");
            assert_eq!(line.len(), format!("thread {t} line {i:05} ").len() + i % 97, "{line}");
            next[t] += 1;
        }
        assert_eq!(next, [5_000; 4]);
        assert!(writes < 20_000, "lines are written in batches: {writes} writes for 20 000 lines");
    }

    #[test]
    fn write_out_writes_what_is_queued_before_it_returns() {
        let sink = Sink::default();
        let (writer, _guard) = spawn(sink.clone()).unwrap();
        for i in 0..100 {
            (&writer).write_all(format!("line {i}\n").as_bytes()).unwrap();
        }
        writer.write_out();
        let written = String::from_utf8(sink.0.lock().unwrap().0.clone()).unwrap();
        assert_eq!(written, (0..100).map(|i| format!("line {i}\n")).collect::<String>());
    }

    #[test]
    fn a_line_logged_on_a_quiet_server_is_written_without_waiting_for_more() {
        let sink = Sink::default();
        let (writer, _guard) = spawn(sink.clone()).unwrap();
        (&writer).write_all(b"alone\n").unwrap();
        // The guard is still held: only the writer thread can write the line.
        for _ in 0..10_000 {
            if !sink.0.lock().unwrap().0.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(sink.0.lock().unwrap().0, b"alone\n");
    }
}
