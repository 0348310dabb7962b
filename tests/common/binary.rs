//! The gateway binary as production runs it (`serve --config`), with its stdout and stderr
//! read line by line: for what only the binary sets up, such as the log format chosen by
//! `logging::init` (a test process has one global subscriber, and the binary's log thread
//! writes to the real stdout).

use super::{write_config, Harness, Opts, TestDir};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use journeybee_sim::Simulator;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Lines read so far from one stream of the process.
type Lines = Arc<Mutex<Vec<String>>>;

/// A running `journeybee-gateway serve`; killed on drop if not stopped.
pub struct GatewayProcess {
    child: Option<Child>,
    stdout: Lines,
    stderr: Lines,
    readers: Vec<JoinHandle<()>>,
}

/// Reads `stream` line by line into `into` until it closes.
fn read_lines(stream: impl Read + Send + 'static, into: Lines) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            into.lock().unwrap().push(line);
        }
    })
}

impl GatewayProcess {
    /// Starts `serve --config <config>` with `RUST_LOG` unset, so the config's `[log]` rules.
    pub fn start(config: &Path) -> GatewayProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_journeybee-gateway"))
            .args(["serve", "--config"])
            .arg(config)
            .env_remove("RUST_LOG")
            .env_remove("JBGW_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the gateway binary starts");
        let (stdout, stderr) = (Lines::default(), Lines::default());
        let readers = vec![
            read_lines(child.stdout.take().unwrap(), stdout.clone()),
            read_lines(child.stderr.take().unwrap(), stderr.clone()),
        ];
        GatewayProcess {
            child: Some(child),
            stdout,
            stderr,
            readers,
        }
    }

    /// The stdout lines so far.
    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// The stdout lines so far that parse as JSON objects.
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(Value::is_object)
            .collect()
    }

    /// Waits (up to ten seconds) until `ready` holds for the JSON lines so far.
    pub async fn wait_for(&self, what: &str, ready: impl Fn(&[Value]) -> bool) {
        super::eventually(what, Duration::from_secs(10), || {
            ready(&self.json_lines()) || self.exited()
        })
        .await;
        assert!(
            !self.exited(),
            "the gateway exited while waiting for {what}; stderr: {:?}",
            self.stderr.lock().unwrap()
        );
    }

    /// Whether the process has closed its stdout (it exited).
    pub fn exited(&self) -> bool {
        self.readers.first().is_some_and(JoinHandle::is_finished)
    }

    /// The public and admin base URLs, from the "gateway listening" event (which must be a
    /// JSON line).
    pub async fn listening(&self) -> (String, String) {
        let find = || {
            self.stdout()
                .into_iter()
                .find(|l| l.contains("gateway listening"))
        };
        super::eventually("\"gateway listening\"", Duration::from_secs(10), || {
            find().is_some() || self.exited()
        })
        .await;
        let line = find().unwrap_or_else(|| {
            panic!(
                "the gateway exited before listening; stderr: {:?}",
                self.stderr.lock().unwrap()
            )
        });
        let event: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        let url = |field: &str| {
            let addr = event[field].as_str();
            format!(
                "http://{}",
                addr.unwrap_or_else(|| panic!("{field}: {event}"))
            )
        };
        (url("addr"), url("admin_addr"))
    }

    /// SIGTERM, then waits for the exit (0: drained, every pending log line written) and for
    /// both streams to close; returns every stdout and stderr line.
    pub fn stop(self) -> (Vec<String>, Vec<String>) {
        self.terminate();
        self.wait()
    }

    /// Sends SIGTERM, without waiting.
    pub fn terminate(&self) {
        let pid = self.child.as_ref().unwrap().id();
        let term = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(term.success());
    }

    /// Waits for the exit (0) and for both streams to close; returns every stdout and
    /// stderr line.
    pub fn wait(mut self) -> (Vec<String>, Vec<String>) {
        let mut child = self.child.take().unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "{status:?}");
        for r in self.readers.drain(..) {
            r.join().unwrap();
        }
        (self.stdout(), self.stderr.lock().unwrap().clone())
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Harness {
    /// The simulator in this process and the gateway *binary* in front of it, with the config
    /// [`Harness::with`] would use. `gw` is `None`: stop the process with
    /// [`GatewayProcess::stop`].
    pub async fn with_binary(opts: Opts) -> (Harness, GatewayProcess) {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), opts.sim.clone())
            .await
            .unwrap();
        let ids = sim.user_ids();
        let dir = TestDir::new();
        let path = write_config(&dir, &opts, &sim);
        let process = GatewayProcess::start(&path);
        let (base, admin) = process.listening().await;
        let harness = Harness {
            sim,
            gw: None,
            client: Client::builder(TokioExecutor::new()).build_http(),
            dir,
            base,
            admin,
            auth: opts.auth,
            alice_id: ids[0],
            bob_id: ids[1],
            carol_id: ids[2],
        };
        (harness, process)
    }
}
