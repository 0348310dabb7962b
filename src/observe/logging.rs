//! Structured logs through `tracing`: human-readable by default, one JSON object per line when
//! configured. `RUST_LOG`, when set, overrides the configured level.
//!
//! Lines are written by a thread of their own, not by the runtime thread that logs them: a
//! runtime thread only appends the formatted line to a shared buffer (no allocation once the
//! buffer has grown, no system call, no wake-up), and the log thread writes what has gathered
//! every [`FLUSH_EVERY`] (at once past [`FLUSH_AT`] bytes), as nginx's buffered access log
//! does.
//!
//! A runtime thread never waits for the log thread. When stdout is slow (a full pipe, a
//! stalled log shipper) lines gather in the buffer, up to a bound that depends on what they
//! are:
//!
//! - access lines and every other line except audit events: up to [`MAX_PENDING`] bytes
//!   pending. Past it they are dropped and counted (`jbgw_log_lines_dropped_total`, by
//!   `kind`), and once the writer catches up a warning says how many were lost.
//! - audit events (target `audit`, one per write): never dropped below
//!   [`MAX_PENDING_AUDIT`] bytes pending, sixteen times as much, about 130,000 events (an
//!   event is about 500 bytes): at the upstream's 100 writes a minute per key, a day of one
//!   key's writes, written in order when the pipe drains. Memory is the only thing that can
//!   hold them, and it is bounded: past that bound an audit event is dropped too, counted
//!   (`kind="audit"`), and an error is logged once the writer catches up.
//!
//! (The bound used to be a wait: past 4 MiB pending, every thread that logged, runtime threads
//! included, blocked on a condition variable until the log thread took the buffer, so a
//! stdout nobody read stalled every request once about 10,000 access lines had gathered.)
//!
//! Timestamps are RFC 3339 in UTC with microseconds, the date and time part formatted once
//! per second ([`Clock`]).

use crate::config::{LogFormat, LogSettings};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Pending bytes past which lines other than audit events are dropped.
pub const MAX_PENDING: usize = 4 << 20;
/// Pending bytes past which audit events are dropped too (see the module documentation).
pub const MAX_PENDING_AUDIT: usize = 16 * MAX_PENDING;
/// How often the log thread writes what has gathered.
pub const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(20);
/// Past this many pending bytes the log thread is woken at once.
pub const FLUSH_AT: usize = 64 << 10;

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
    /// Lines dropped since the log thread last reported it: other lines, audit events.
    dropped: [AtomicU64; 2],
}

/// What a line is, for the bound it is kept under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// An access line, or any other line but an audit event.
    Other = 0,
    /// An audit event: kept far longer.
    Audit = 1,
}

impl Kind {
    fn of(meta: &tracing::Metadata<'_>) -> Kind {
        if meta.target() == "audit" {
            Kind::Audit
        } else {
            Kind::Other
        }
    }

    fn bound(self) -> usize {
        match self {
            Kind::Other => MAX_PENDING,
            Kind::Audit => MAX_PENDING_AUDIT,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Kind::Other => "access",
            Kind::Audit => "audit",
        }
    }
}

/// `jbgw_log_lines_dropped_total`, by `kind` (`access`: access and other lines; `audit`).
/// One per process, like the log thread; each metrics registry registers it.
pub fn dropped_lines() -> &'static prometheus::IntCounterVec {
    static DROPPED: OnceLock<prometheus::IntCounterVec> = OnceLock::new();
    DROPPED.get_or_init(|| {
        let v = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "jbgw_log_lines_dropped_total",
                "Log lines dropped because stdout fell behind (audit events only past a far larger bound)",
            ),
            &["kind"],
        )
        .expect("valid metric");
        for kind in [Kind::Other, Kind::Audit] {
            v.with_label_values(&[kind.label()]);
        }
        v
    })
}

/// The writer handed to the formatter: appends one formatted event to the pending buffer.
#[derive(Clone)]
pub struct Background {
    pending: Arc<Pending>,
    kind: Kind,
}

impl Write for Background {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut state = crate::lock(&self.pending.state);
        if state.closed {
            // After shutdown (the guard is gone): written directly.
            drop(state);
            return std::io::stdout().write(line);
        }
        if state.buf.len() >= self.kind.bound() {
            // Never a wait: the writer is behind, and a request must not wait for it.
            drop(state);
            self.pending.dropped[self.kind as usize].fetch_add(1, Ordering::Relaxed);
            dropped_lines()
                .with_label_values(&[self.kind.label()])
                .inc();
            return Ok(line.len());
        }
        let was = state.buf.len();
        state.buf.extend_from_slice(line);
        let now = state.buf.len();
        drop(state);
        // Woken only when a batch is worth writing; otherwise it writes on its next tick.
        if was < FLUSH_AT && now >= FLUSH_AT {
            self.pending.more.notify_one();
        }
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

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Background {
        Background {
            pending: self.pending.clone(),
            kind: Kind::of(meta),
        }
    }
}

/// Says, through the log itself, how many lines the writer's slowness cost since last said.
fn report_dropped(pending: &Pending) {
    let other = pending.dropped[Kind::Other as usize].swap(0, Ordering::Relaxed);
    if other > 0 {
        tracing::warn!(
            dropped = other,
            "stdout fell behind: access and other log lines were dropped"
        );
    }
    let audit = pending.dropped[Kind::Audit as usize].swap(0, Ordering::Relaxed);
    if audit > 0 {
        tracing::error!(
            dropped = audit,
            bound_bytes = MAX_PENDING_AUDIT,
            "stdout fell behind past the audit bound: audit events were dropped"
        );
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
                    while state.buf.len() < FLUSH_AT && !state.closed {
                        let (next, timeout) = theirs
                            .more
                            .wait_timeout(state, FLUSH_EVERY)
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        state = next;
                        if timeout.timed_out() && !state.buf.is_empty() {
                            break;
                        }
                    }
                    // Swap, so both buffers keep their capacity: no allocation per batch.
                    std::mem::swap(&mut batch, &mut state.buf);
                    state.closed
                };
                let _ = out.write_all(&batch);
                let _ = out.flush();
                batch.clear();
                report_dropped(&theirs);
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
        Background {
            pending: shared.clone(),
            kind: Kind::Other,
        },
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
    // A second call finds a subscriber installed and changes nothing.
    match settings.format {
        LogFormat::Json => {
            use tracing_subscriber::layer::SubscriberExt;
            use tracing_subscriber::util::SubscriberInitExt;
            let _ = tracing_subscriber::registry()
                .with(filter)
                .with(JsonLines { writer })
                .try_init();
        }
        LogFormat::Text => {
            // Colours only on a terminal: escape codes in a file or a log collector's pipe
            // are noise (and break grep).
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_timer(Clock)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
                .with_writer(writer)
                .try_init();
        }
    }
    guard
}

/// One JSON object per event, written straight into the log buffer: `timestamp`, `level`,
/// the event's fields (`message` first) and `target`, the shape of tracing-subscriber's
/// flattened JSON. Formatting an access-log line through the generic formatter cost about a
/// fifth of a cache hit's CPU; this writes each field once into a reused line buffer.
struct JsonLines {
    writer: Background,
}

thread_local! {
    static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for JsonLines {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        LINE.with(|cell| {
            let Ok(mut line) = cell.try_borrow_mut() else {
                return; // an event logged while formatting one: dropped, never recursed
            };
            line.clear();
            json_line(&mut line, event);
            let _ = self
                .writer
                .make_writer_for(event.metadata())
                .write_all(line.as_bytes());
        });
    }
}

/// Formats `event` as one JSON line into `line`.
fn json_line(line: &mut String, event: &tracing::Event<'_>) {
    use std::fmt::Write as _;
    let meta = event.metadata();
    line.push_str("{\"timestamp\":\"");
    let _ = timestamp(line);
    let _ = write!(line, "\",\"level\":\"{}\"", meta.level());
    event.record(&mut Fields(line));
    line.push_str(",\"target\":");
    json_str(line, meta.target());
    line.push_str("}\n");
}

/// Appends `s` as a JSON string (RFC 8259 §7 escapes).
fn json_str(out: &mut String, s: &str) {
    out.push('"');
    Escaped(out).push(s);
    out.push('"');
}

/// A `fmt::Write` that escapes what it is given for a JSON string.
struct Escaped<'a>(&'a mut String);

impl Escaped<'_> {
    fn push(&mut self, s: &str) {
        use std::fmt::Write as _;
        // Every character that needs escaping is ASCII, so bytes are scanned (no UTF-8
        // decoding) and the text between them is copied in one piece.
        let bytes = s.as_bytes();
        let mut plain = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let esc = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..0x20 => "",
                _ => continue,
            };
            self.0.push_str(&s[plain..i]);
            if esc.is_empty() {
                let _ = write!(self.0, "\\u{:04x}", b);
            } else {
                self.0.push_str(esc);
            }
            plain = i + 1;
        }
        self.0.push_str(&s[plain..]);
    }
}

impl std::fmt::Write for Escaped<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.push(s);
        Ok(())
    }
}

/// Writes an event's fields as `,"name":value` pairs.
struct Fields<'a>(&'a mut String);

impl Fields<'_> {
    fn key(&mut self, field: &tracing::field::Field) {
        self.0.push(',');
        json_str(self.0, field.name());
        self.0.push(':');
    }
}

impl tracing::field::Visit for Fields<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.key(field);
        json_str(self.0, value);
    }

    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        use std::fmt::Write as _;
        self.key(field);
        let _ = write!(self.0, "{value}");
    }

    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        use std::fmt::Write as _;
        self.key(field);
        let _ = write!(self.0, "{value}");
    }

    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.key(field);
        self.0.push_str(if value { "true" } else { "false" });
    }

    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        use std::fmt::Write as _;
        self.key(field);
        if value.is_finite() {
            let _ = write!(self.0, "{value}");
        } else {
            self.0.push_str("null");
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write as _;
        self.key(field);
        self.0.push('"');
        let _ = write!(Escaped(self.0), "{value:?}");
        self.0.push('"');
    }
}

/// RFC 3339 UTC timestamps with microseconds; the part up to the seconds is formatted once
/// per second per thread, the rest is six digits.
#[derive(Debug, Default, Clone, Copy)]
pub struct Clock;

thread_local! {
    static SECOND: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
}

impl tracing_subscriber::fmt::time::FormatTime for Clock {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        timestamp(w)
    }
}

/// Writes the current time, RFC 3339 UTC with microseconds.
fn timestamp(w: &mut impl std::fmt::Write) -> std::fmt::Result {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    SECOND.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.0 != secs {
            cell.1.clear();
            civil(secs, &mut cell.1);
            cell.0 = secs;
        }
        write!(w, "{}.{:06}Z", cell.1, now.subsec_micros())
    })
}

/// `YYYY-MM-DDTHH:MM:SS` of a Unix time, UTC (Howard Hinnant's days-to-civil algorithm).
fn civil(secs: u64, out: &mut String) {
    use std::fmt::Write as _;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
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
    fn json_lines_are_valid_json_with_every_field() {
        let sink = Sink::default();
        let (writer, guard) = start(sink.clone());
        let subscriber = {
            use tracing_subscriber::layer::SubscriberExt;
            tracing_subscriber::registry().with(JsonLines { writer })
        };
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(
                target: "access",
                status = 201u16,
                delta = -3i64,
                ms = 1.5f64,
                inf = f64::INFINITY,
                ok = true,
                none = None::<&str>,
                text = "quote \" backslash \\ newline \n tab \t bell \u{7} é",
                "request {}",
                "done"
            );
        });
        drop(guard);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["target"], "access");
        assert_eq!(v["message"], "request done");
        assert_eq!(v["status"], 201);
        assert_eq!(v["delta"], -3);
        assert_eq!(v["ms"], 1.5);
        assert!(v["inf"].is_null());
        assert_eq!(v["ok"], true);
        assert!(v.get("none").is_none());
        assert_eq!(
            v["text"],
            "quote \" backslash \\ newline \n tab \t bell \u{7} é"
        );
        let ts = v["timestamp"].as_str().unwrap();
        assert_eq!(ts.len(), "2026-11-30T01:59:59.123456Z".len(), "{ts}");
        assert!(ts.ends_with('Z'));
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let mut s = String::new();
        civil(0, &mut s);
        assert_eq!(s, "1970-01-01T00:00:00");
        s.clear();
        civil(951_782_400, &mut s); // a leap day
        assert_eq!(s, "2000-02-29T00:00:00");
        s.clear();
        civil(1_796_003_999, &mut s);
        assert_eq!(s, "2026-11-30T01:59:59");
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

    #[test]
    fn past_the_bound_lines_are_dropped_and_counted_but_audit_events_kept() {
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let sink = Sink::default();
        let (mut writer, guard) = start(Stuck(gate.clone(), sink.clone()));
        let mut audit = writer.clone();
        audit.kind = Kind::Audit;
        writer.write_all(b"first\n").unwrap();
        // Wait until the log thread holds "first" and is stuck writing it.
        while !crate::lock(&guard.shared.state).buf.is_empty() {
            std::thread::yield_now();
        }
        let dropped = || dropped_lines().with_label_values(&["access"]).get();
        let before = dropped();
        let line = [b'a'; 1023];
        let lines = MAX_PENDING / 1024 + 100;
        // On this thread: a wait would hang the test.
        for _ in 0..lines {
            writer.write_all(&line).unwrap();
            writer.write_all(b"\n").unwrap();
        }
        for i in 0..1000 {
            audit.write_all(format!("audit {i}\n").as_bytes()).unwrap();
        }
        assert!(dropped() - before >= 100, "{}", dropped() - before);
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        drop(guard);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let audits: Vec<&str> = text.lines().filter(|l| l.starts_with("audit")).collect();
        assert_eq!(audits.len(), 1000, "every audit event kept, in order");
        assert_eq!(audits[999], "audit 999");
        assert!(text.len() <= MAX_PENDING + 2048 + 1000 * 10 + 6);
    }

    #[test]
    fn audit_events_are_dropped_only_past_their_own_bound() {
        let pending = Arc::new(Pending::default());
        let mut audit = Background {
            pending: pending.clone(),
            kind: Kind::Audit,
        };
        crate::lock(&pending.state).buf = vec![b'x'; MAX_PENDING_AUDIT];
        let before = dropped_lines().with_label_values(&["audit"]).get();
        audit.write_all(b"audit\n").unwrap();
        assert_eq!(crate::lock(&pending.state).buf.len(), MAX_PENDING_AUDIT);
        assert_eq!(
            dropped_lines().with_label_values(&["audit"]).get(),
            before + 1
        );
        assert_eq!(
            pending.dropped[Kind::Audit as usize].load(Ordering::Relaxed),
            1
        );
    }
}
