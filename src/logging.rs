//! Structured logs through `tracing`: human-readable by default, one JSON object per line when
//! configured. `RUST_LOG`, when set, overrides the configured level.
//!
//! Lines are written by a thread of their own, not by the runtime thread that logs them: a
//! runtime thread only appends the formatted line to a shared buffer (no allocation once the
//! buffer has grown, no system call), and the log thread writes whole batches to stdout. A
//! slow stdout (a full pipe, a stalled log shipper) therefore does not stall request handling
//! until the buffer holds [`MAX_PENDING`] bytes; past that, loggers wait for it to drain
//! rather than drop lines, since audit events travel this way too.

use crate::config::{LogFormat, LogSettings};
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Bytes of log lines waiting for the log thread before loggers wait for it.
pub const MAX_PENDING: usize = 4 << 20;

/// Keeps the log thread running; dropping it writes out every pending line and stops it.
pub struct LogGuard {
    shared: Arc<Pending>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        crate::lock(&self.shared.state).closed = true;
        self.shared.more.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[derive(Default)]
struct State {
    buf: Vec<u8>,
    closed: bool,
}

#[derive(Default)]
struct Pending {
    state: Mutex<State>,
    /// Signalled when lines are added (or the guard closes).
    more: Condvar,
    /// Signalled when the log thread has taken the buffer.
    room: Condvar,
}

/// The writer handed to the formatter: appends one formatted event to the pending buffer.
#[derive(Clone)]
pub struct Background(Arc<Pending>);

impl Write for Background {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut state = crate::lock(&self.0.state);
        while state.buf.len() >= MAX_PENDING && !state.closed {
            state = self
                .0
                .room
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        if state.closed {
            // After shutdown (the guard is gone): written directly.
            drop(state);
            return std::io::stdout().write(line);
        }
        state.buf.extend_from_slice(line);
        drop(state);
        self.0.more.notify_one();
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Background {
    type Writer = Background;
    fn make_writer(&'a self) -> Background {
        self.clone()
    }
}

/// Starts the log thread writing to `out`.
fn start(mut out: impl Write + Send + 'static) -> (Background, LogGuard) {
    let shared = Arc::new(Pending::default());
    let theirs = shared.clone();
    let thread = std::thread::Builder::new()
        .name("jbgw-log".into())
        .spawn(move || {
            let mut batch = Vec::new();
            loop {
                let closed = {
                    let mut state = crate::lock(&theirs.state);
                    while state.buf.is_empty() && !state.closed {
                        state = theirs
                            .more
                            .wait(state)
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                    }
                    // Swap, so both buffers keep their capacity: no allocation per batch.
                    std::mem::swap(&mut batch, &mut state.buf);
                    state.closed
                };
                theirs.room.notify_all();
                let _ = out.write_all(&batch);
                let _ = out.flush();
                batch.clear();
                if closed {
                    let rest = std::mem::take(&mut crate::lock(&theirs.state).buf);
                    let _ = out.write_all(&rest);
                    let _ = out.flush();
                    return;
                }
            }
        })
        .expect("spawn the log thread");
    (
        Background(shared.clone()),
        LogGuard {
            shared,
            thread: Some(thread),
        },
    )
}

/// Installs the global subscriber, writing through the log thread; keep the guard until the
/// process exits. Safe to call once per process (a second call installs nothing).
pub fn init(settings: &LogSettings) -> LogGuard {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.level));
    let (writer, guard) = start(std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let _ = match settings.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    guard
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_is_written_in_order_by_the_time_the_guard_is_dropped() {
        let sink = Sink::default();
        let (writer, guard) = start(sink.clone());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let mut w = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        w.write_all(format!("{t}:{i}\n").as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(guard);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 4000);
        for t in 0..4 {
            let mine: Vec<usize> = text
                .lines()
                .filter_map(|l| l.strip_prefix(&format!("{t}:")))
                .map(|n| n.parse().unwrap())
                .collect();
            assert_eq!(mine, (0..1000).collect::<Vec<_>>());
        }
    }

    /// A writer that blocks until released: a stdout nobody reads.
    struct Stuck(Arc<(Mutex<bool>, Condvar)>, Sink);

    impl Write for Stuck {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let (lock, cv) = &*self.0;
            let mut released = lock.lock().unwrap();
            while !*released {
                released = cv.wait(released).unwrap();
            }
            self.1.write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stuck_stdout_does_not_block_the_logger_below_the_bound() {
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let sink = Sink::default();
        let (mut writer, guard) = start(Stuck(gate.clone(), sink.clone()));
        // The log thread takes the first line and hangs in write; the logger goes on.
        writer.write_all(b"first\n").unwrap();
        for i in 0..10_000 {
            writer.write_all(format!("line {i}\n").as_bytes()).unwrap();
        }
        assert!(
            sink.0.lock().unwrap().is_empty(),
            "nothing written while stuck"
        );
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        drop(guard);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 10_001);
    }
}
