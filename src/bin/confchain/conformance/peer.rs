//! The runner's side of the peer protocol (`conformance/PROTOCOL.md`): a child process spoken to in
//! JSON lines over its stdin/stdout, with a timeout on every answer and bounded output.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use serde_json::{json, Map, Value};

/// The protocol version this runner speaks.
pub const PROTOCOL_VERSION: u64 = 1;
/// The longest line a peer may write (a 9 MiB block in hex is 18 MiB).
const MAX_LINE: usize = 32 << 20;
/// How much of a peer's stderr is kept for the report.
const STDERR_TAIL: usize = 4096;

/// What a peer answered to one request.
#[derive(Debug, Clone)]
pub enum Answer {
    /// The operation succeeded; its result fields.
    Ok(Map<String, Value>),
    /// The operation was refused with this error.
    Refused(PeerError),
    /// The peer does not implement the operation.
    Unsupported,
}

/// An error as a peer reports it.
#[derive(Debug, Clone, Default)]
pub struct PeerError {
    /// The reference's code name (`INVALID_BLOCK__HASH_MISMATCH`), or empty for a codeless error.
    pub code: String,
    /// A finer kind name (`PARSE`, `NOT_FROM_SERVER`, ...), when the peer knows it.
    pub name: String,
    /// The message text.
    pub message: String,
}

impl std::fmt::Display for PeerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let label = if self.code.is_empty() { &self.name } else { &self.code };
        if label.is_empty() || self.message.starts_with(label.as_str()) {
            write!(f, "refused: {}", self.message)
        } else {
            write!(f, "refused {label}: {}", self.message)
        }
    }
}

/// The peer broke the protocol: it crashed, hung, or wrote something that is not an answer.
#[derive(Debug, Clone)]
pub struct Broken(pub String);

/// A running peer process.
pub struct Peer {
    child: Child,
    /// Lines for the peer's stdin, written by a thread of their own (a peer that does not read
    /// must not block the runner past its timeout).
    stdin: Option<Sender<Vec<u8>>>,
    lines: Receiver<Result<String, String>>,
    stderr: Receiver<Vec<u8>>,
    timeout: Duration,
    next_id: u64,
    /// Every request sent and answer received, in order (for reproducers).
    pub transcript: Vec<Value>,
    /// The peer's `hello` answer.
    pub hello: Map<String, Value>,
}

impl Peer {
    /// Starts `command` with `sh -c` and says hello.
    pub fn start(command: &str, timeout: Duration) -> Result<Peer, Broken> {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(command);
        // Its own process group, so that a hung peer is ended with everything it started.
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Broken(format!("cannot start peer {command:?}: {e}")))?;
        let stdout = child.stdout.take().ok_or_else(|| Broken("no stdout".into()))?;
        let stderr = child.stderr.take().ok_or_else(|| Broken("no stderr".into()))?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            loop {
                let mut line = Vec::new();
                match (&mut reader).take(MAX_LINE as u64 + 1).read_until(b'\n', &mut line) {
                    Ok(0) => {
                        let _ = tx.send(Err("peer closed its stdout".into()));
                        return;
                    }
                    Ok(_) if line.len() > MAX_LINE => {
                        let _ = tx.send(Err(format!("peer wrote a line longer than {MAX_LINE} bytes")));
                        return;
                    }
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line).trim().to_owned();
                        if !text.is_empty() && tx.send(Ok(text)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(format!("cannot read the peer's stdout: {e}")));
                        return;
                    }
                }
            }
        });
        let (etx, stderr_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut tail = Vec::new();
            let mut buf = [0u8; 4096];
            let mut r = stderr;
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                tail.extend_from_slice(buf.get(..n).unwrap_or_default());
                if tail.len() > STDERR_TAIL {
                    tail.drain(..tail.len() - STDERR_TAIL);
                }
            }
            let _ = etx.send(tail);
        });
        let mut raw_stdin = child.stdin.take().ok_or_else(|| Broken("no stdin".into()))?;
        let (stdin, lines_in) = mpsc::channel::<Vec<u8>>();
        std::thread::spawn(move || {
            for line in lines_in {
                if raw_stdin.write_all(&line).and_then(|()| raw_stdin.flush()).is_err() {
                    return;
                }
            }
        });
        let stdin = Some(stdin);
        let mut peer = Peer {
            child,
            stdin,
            lines,
            stderr: stderr_rx,
            timeout,
            next_id: 0,
            transcript: Vec::new(),
            hello: Map::new(),
        };
        match peer.call("hello", json!({ "versions": [PROTOCOL_VERSION] }))? {
            Answer::Ok(hello) => {
                let version = hello.get("version").and_then(Value::as_u64);
                if version != Some(PROTOCOL_VERSION) {
                    return Err(Broken(format!(
                        "peer speaks protocol version {version:?}, the runner {PROTOCOL_VERSION}"
                    )));
                }
                peer.hello = hello;
                Ok(peer)
            }
            other => Err(Broken(format!("peer did not accept hello: {other:?}"))),
        }
    }

    /// The implementation's name, as the peer states it.
    pub fn implementation(&self) -> String {
        self.hello.get("implementation").and_then(Value::as_str).unwrap_or("unnamed").to_owned()
    }

    /// Whether the peer says it supports `op`.
    pub fn supports(&self, op: &str) -> bool {
        self.hello.get("ops").and_then(Value::as_array).is_some_and(|ops| ops.iter().any(|o| o.as_str() == Some(op)))
    }

    /// A boolean capability of the hello answer (`keys`, `rng`).
    pub fn can(&self, capability: &str) -> bool {
        self.hello.get(capability).and_then(Value::as_bool).unwrap_or(false)
    }

    /// Whether the peer reports refusals of `op`: `errors` is a boolean for every operation, or an
    /// object naming the areas it reports (`blocks`, `broadcasts`, `packets`; a missing area is false).
    pub fn reports_errors(&self, op: &str) -> bool {
        let area = match op {
            "receive_broadcast" => "broadcasts",
            "encrypt" | "decrypt" | "encrypt_message" | "decrypt_message" => "packets",
            _ if op.contains("frame") || op.starts_with("level_") => "packets",
            _ => "blocks",
        };
        match self.hello.get("errors") {
            Some(Value::Bool(b)) => *b,
            Some(Value::Object(m)) => m.get(area).and_then(Value::as_bool).unwrap_or(false),
            _ => false,
        }
    }

    /// Sends one request and waits for its answer.
    pub fn call(&mut self, op: &str, args: Value) -> Result<Answer, Broken> {
        self.next_id = self.next_id.saturating_add(1);
        let id = self.next_id;
        let mut request = match args {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        request.insert("id".into(), json!(id));
        request.insert("op".into(), json!(op));
        let request = Value::Object(request);
        let line = request.to_string();
        self.transcript.push(json!({ "request": request }));
        let stdin = self.stdin.as_ref().ok_or_else(|| Broken("peer stdin closed".into()))?;
        let mut bytes = line.into_bytes();
        bytes.push(b'\n');
        if stdin.send(bytes).is_err() {
            return Err(self.broken("cannot write to the peer: its stdin is closed".into()));
        }
        let text = match self.lines.recv_timeout(self.timeout) {
            Ok(Ok(text)) => text,
            Ok(Err(e)) => return Err(self.broken(e)),
            Err(RecvTimeoutError::Timeout) => {
                return Err(self.broken(format!("no answer to {op} within {} ms", self.timeout.as_millis())))
            }
            Err(RecvTimeoutError::Disconnected) => return Err(self.broken("peer output ended".into())),
        };
        let answer: Value = serde_json::from_str(&text)
            .map_err(|e| self.broken(format!("answer to {op} is not JSON ({e}): {}", clip(&text))))?;
        self.transcript.push(json!({ "answer": answer }));
        if answer.get("id").and_then(Value::as_u64) != Some(id) {
            return Err(self.broken(format!("answer to {op} has the wrong id: {}", clip(&text))));
        }
        if answer.get("unsupported").and_then(Value::as_bool) == Some(true) {
            return Ok(Answer::Unsupported);
        }
        if let Some(e) = answer.get("error") {
            let field = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            return Ok(Answer::Refused(PeerError {
                code: field("code"),
                name: field("name"),
                message: field("message"),
            }));
        }
        match answer.get("ok") {
            Some(Value::Object(m)) => Ok(Answer::Ok(m.clone())),
            Some(Value::Null) | None if answer.get("ok").is_some() => Ok(Answer::Ok(Map::new())),
            _ => Err(self.broken(format!("answer to {op} has neither ok, error nor unsupported: {}", clip(&text)))),
        }
    }

    /// Ends the peer and every process it started.
    fn kill(&mut self) {
        #[cfg(unix)]
        {
            let group = format!("-{}", self.child.id());
            let _ = Command::new("kill")
                .args(["-KILL", "--", group.as_str()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn broken(&mut self, what: String) -> Broken {
        self.kill();
        let tail = self.stderr.recv_timeout(Duration::from_millis(500)).unwrap_or_default();
        let tail = String::from_utf8_lossy(&tail);
        let tail = tail.trim();
        self.transcript.push(json!({ "broken": what, "stderr_tail": tail }));
        if tail.is_empty() {
            Broken(what)
        } else {
            Broken(format!("{what} (stderr: {})", clip(tail)))
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        drop(self.stdin.take());
        // Give a well-behaved peer a moment to exit on EOF, then make sure it is gone.
        for _ in 0..20 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill();
    }
}

/// The first 300 characters of a text.
pub fn clip(s: &str) -> String {
    if s.chars().count() <= 300 {
        s.to_owned()
    } else {
        let head: String = s.chars().take(300).collect();
        format!("{head}…")
    }
}
