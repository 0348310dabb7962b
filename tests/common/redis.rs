//! A real `redis-server` for one test: started on a free loopback port with persistence off,
//! ready once it answers `PING`, killed (SIGKILL) and restarted on the same port on demand,
//! and killed on drop. A tiny RESP client reads what the gateway stored.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// How long start-up and shutdown may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(10);

/// A reply in the Redis protocol (RESP2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    /// `None` is the null bulk string.
    Bulk(Option<Vec<u8>>),
    /// `None` is the null array.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The integer of an `Int` reply.
    pub fn int(&self) -> i64 {
        match self {
            Reply::Int(n) => *n,
            other => panic!("expected an integer reply, got {other:?}"),
        }
    }

    /// A bulk or simple string as text (`None` for the null bulk string).
    pub fn text(&self) -> Option<String> {
        match self {
            Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            Reply::Simple(s) => Some(s.clone()),
            Reply::Bulk(None) => None,
            other => panic!("expected a string reply, got {other:?}"),
        }
    }

    /// The elements of an array of strings, as text.
    pub fn strings(&self) -> Vec<String> {
        match self {
            Reply::Array(Some(items)) => {
                items.iter().map(|i| i.text().unwrap_or_default()).collect()
            }
            Reply::Array(None) => Vec::new(),
            other => panic!("expected an array reply, got {other:?}"),
        }
    }
}

/// A `redis-server` child process on 127.0.0.1.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
}

/// A port nobody listens on right now (the OS's choice for port 0, released at once).
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers `PING`.
    pub async fn start() -> RedisServer {
        // Another process may take the port between our probe and redis' bind: retry.
        let mut last = String::new();
        for _ in 0..5 {
            let mut server = RedisServer {
                port: free_port(),
                child: None,
            };
            match server.spawn_and_wait().await {
                Ok(()) => return server,
                Err(e) => last = e,
            }
        }
        panic!("redis-server did not start: {last}");
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Whether the process is running (started and not killed).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn spawn(&mut self) -> Result<(), String> {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                &std::env::temp_dir().to_string_lossy(),
                "--loglevel",
                "warning",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("cannot run redis-server ({e}); install Debian's redis-server package")
            })?;
        self.child = Some(child);
        Ok(())
    }

    async fn spawn_and_wait(&mut self) -> Result<(), String> {
        self.spawn()?;
        let deadline = Instant::now() + DEADLINE;
        loop {
            if self.ping().await {
                return Ok(());
            }
            // A server that exited (port taken) will never answer.
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!(
                        "redis-server on port {} exited: {status}",
                        self.port
                    ));
                }
            }
            if Instant::now() >= deadline {
                self.kill_now();
                return Err(format!(
                    "redis-server on port {} did not answer PING within {DEADLINE:?}",
                    self.port
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Whether a `PING` on a fresh connection is answered `+PONG` within a second.
    pub async fn ping(&self) -> bool {
        let attempt = async {
            let mut s = TcpStream::connect(self.addr()).await.ok()?;
            s.write_all(b"PING\r\n").await.ok()?;
            let mut buf = [0u8; 7];
            s.read_exact(&mut buf).await.ok()?;
            Some(&buf == b"+PONG\r\n")
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(1), attempt).await,
            Ok(Some(true))
        )
    }

    fn kill_now(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGKILLs the server (no goodbye to its clients) and waits until the port refuses
    /// connections.
    pub async fn kill(&mut self) {
        self.kill_now();
        let deadline = Instant::now() + DEADLINE;
        while TcpStream::connect(self.addr()).await.is_ok() {
            assert!(
                Instant::now() < deadline,
                "port {} still accepts after redis-server was killed",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Starts a new, empty server on the same port and waits for `PING`.
    pub async fn restart(&mut self) {
        self.kill().await;
        self.spawn_and_wait()
            .await
            .unwrap_or_else(|e| panic!("redis-server did not restart: {e}"));
    }

    /// Freezes the server (SIGSTOP): connections stay open and nothing is answered, like a
    /// black-holed or badly overloaded Redis.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen server run again (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("redis-server is running").id();
        let status = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {sig} {pid} failed");
    }

    /// Runs one command on a fresh connection and returns the reply.
    pub async fn cmd(&self, args: &[&str]) -> Reply {
        let run = async {
            let stream = TcpStream::connect(self.addr())
                .await
                .unwrap_or_else(|e| panic!("connect to redis on {}: {e}", self.addr()));
            let mut stream = BufReader::new(stream);
            let mut req = format!("*{}\r\n", args.len()).into_bytes();
            for a in args {
                req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
                req.extend_from_slice(a.as_bytes());
                req.extend_from_slice(b"\r\n");
            }
            stream.get_mut().write_all(&req).await.unwrap();
            read_reply(&mut stream).await
        };
        tokio::time::timeout(Duration::from_secs(5), run)
            .await
            .unwrap_or_else(|_| panic!("redis did not answer {args:?} within 5 s"))
    }

    /// Every key matching `pattern` (`KEYS`; fine for a test server's few keys).
    pub async fn keys(&self, pattern: &str) -> Vec<String> {
        let mut keys = self.cmd(&["KEYS", pattern]).await.strings();
        keys.sort();
        keys
    }

    /// `PTTL key`: milliseconds left, -1 without expiry, -2 for a missing key.
    pub async fn pttl(&self, key: &str) -> i64 {
        self.cmd(&["PTTL", key]).await.int()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill_now();
    }
}

/// Reads one RESP2 reply.
fn read_reply<'a>(
    r: &'a mut BufReader<TcpStream>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Reply> + Send + 'a>> {
    Box::pin(async move {
        let mut line = String::new();
        r.read_line(&mut line).await.expect("read a RESP line");
        let line = line.trim_end_matches("\r\n");
        let (kind, rest) = line.split_at(1);
        match kind {
            "+" => Reply::Simple(rest.to_string()),
            "-" => Reply::Error(rest.to_string()),
            ":" => Reply::Int(rest.parse().expect("RESP integer")),
            "$" => {
                let len: i64 = rest.parse().expect("RESP bulk length");
                if len < 0 {
                    return Reply::Bulk(None);
                }
                let mut buf = vec![0u8; len as usize + 2];
                r.read_exact(&mut buf).await.expect("RESP bulk body");
                buf.truncate(len as usize);
                Reply::Bulk(Some(buf))
            }
            "*" => {
                let n: i64 = rest.parse().expect("RESP array length");
                if n < 0 {
                    return Reply::Array(None);
                }
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(read_reply(r).await);
                }
                Reply::Array(Some(items))
            }
            other => panic!("unexpected RESP type {other:?} in {line:?}"),
        }
    })
}
