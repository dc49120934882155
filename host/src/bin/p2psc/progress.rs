//! Progress on stderr, one line per step: text (the protocol's own [`ConnectEvent`] lines and the
//! tool's), one JSON object per line (`--json`), or nothing (`-q`; errors are still reported).

use std::fmt;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use p2psc::identity::PublicKey;
use p2psc::proto::client::{ConnectEvent, Path as ConnectionPath};
use p2psc::wire::Role;
use serde_json::{json, Value};

use crate::fail::Failure;

/// One step worth a line.
#[derive(Debug)]
pub enum Record<'a> {
    /// A step of connecting, as the protocol reports it.
    Step(ConnectEvent),
    /// The peer authenticated: how long it took, where it is, our role, our end.
    Connected {
        /// From the start of this connection to the authenticated peer.
        took: Duration,
        /// From the mediator's Match to the authenticated peer: the set-up proper, without the wait.
        after_match: Duration,
        /// Direct, or relayed through the mediator.
        path: ConnectionPath,
        /// The peer's endpoint.
        peer: SocketAddr,
        /// Ours.
        local: SocketAddr,
        /// Our role.
        role: Role,
    },
    /// `forward --listen`: accepting local connections here.
    Listening(SocketAddr),
    /// `forward --to`: the peer's connections go to this service.
    Serving(&'a str),
    /// A local connection waits for its turn to reach the peer (`waiting` in the queue, itself included).
    Queued {
        /// The local client.
        from: SocketAddr,
        /// Connections in the queue.
        waiting: usize,
    },
    /// A forwarded connection is carried.
    Carrying {
        /// The local end (client or service).
        local: SocketAddr,
        /// The peer's endpoint.
        peer: SocketAddr,
    },
    /// A forwarded connection ended.
    Closed {
        /// The local end.
        local: SocketAddr,
        /// Bytes carried to the peer.
        sent: u64,
        /// Bytes carried from the peer.
        received: u64,
    },
    /// One connection failed; the tool goes on (`forward`).
    Failed(&'a Failure),
    /// `keygen`: the key file is written.
    KeyWritten {
        /// Where.
        file: &'a Path,
        /// Its public key.
        public_key: PublicKey,
    },
    /// `pipe`: both directions are closed.
    Done {
        /// Bytes sent to the peer.
        sent: u64,
        /// Bytes received from it.
        received: u64,
    },
}

/// Where progress goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Quiet,
    Text,
    Json,
}

/// The progress reporter; copies share the start time.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    mode: Mode,
    started: Instant,
}

impl Progress {
    /// `-q` wins over `--json`.
    pub fn new(quiet: bool, json: bool) -> Progress {
        let mode = match (quiet, json) {
            (true, _) => Mode::Quiet,
            (false, true) => Mode::Json,
            (false, false) => Mode::Text,
        };
        Progress {
            mode,
            started: Instant::now(),
        }
    }

    /// Report one step.
    pub fn report(&self, record: Record<'_>) {
        match self.mode {
            Mode::Quiet => {}
            Mode::Text => line(format_args!("p2psc: {record}")),
            Mode::Json => self.json(record.json()),
        }
    }

    /// Report the error that ends the tool (even with `-q`, in JSON with `--json`).
    pub fn error(&self, failure: &Failure) {
        match self.mode {
            Mode::Json => self.json(failure_json("error", failure)),
            _ => line(format_args!("p2psc: error: {failure}")),
        }
    }

    fn json(&self, mut value: Value) {
        let t = self.started.elapsed().as_secs_f64() * 1000.0;
        value["t_ms"] = json!((t * 10.0).round() / 10.0);
        line(format_args!("{value}"));
    }
}

/// Write one line to stderr at once (lines of concurrent tasks do not interleave).
fn line(text: fmt::Arguments<'_>) {
    let mut out = std::io::stderr().lock();
    let _ = writeln!(out, "{text}");
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Leader => "leader",
        Role::Follower => "follower",
    }
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

fn failure_json(event: &str, failure: &Failure) -> Value {
    json!({
        "event": event,
        "code": failure.class.code(),
        "class": failure.class.name(),
        "message": failure.message,
    })
}

/// The JSON object of a protocol step: `event` names it, the fields are the step's data.
fn step_json(event: &ConnectEvent) -> Value {
    match *event {
        ConnectEvent::MediatorConnected(local) => {
            json!({"event": "mediator_connected", "local": local.to_string()})
        }
        ConnectEvent::Challenged(observed) => {
            json!({"event": "challenged", "observed": observed.to_string()})
        }
        ConnectEvent::Registered => json!({"event": "registered"}),
        ConnectEvent::NextMediator { failed, rank } => {
            json!({"event": "next_mediator", "failed": failed.to_string(), "rank": rank})
        }
        ConnectEvent::Matched {
            role,
            peer,
            start_at,
            racing,
        } => json!({
            "event": "matched",
            "role": role_name(role),
            "peer": peer.to_string(),
            "punch_at_ms": start_at.total_micros() as f64 / 1000.0,
            "racing": racing,
        }),
        ConnectEvent::Dialing(to, attempt) => {
            json!({"event": "dialing", "to": to.to_string(), "attempt": attempt})
        }
        ConnectEvent::Retrying(to) => json!({"event": "retrying", "to": to.to_string()}),
        ConnectEvent::Established(to) => json!({"event": "established", "to": to.to_string()}),
        ConnectEvent::Authenticated(to) => {
            json!({"event": "authenticated", "to": to.to_string()})
        }
        ConnectEvent::Relaying { at_once } => json!({"event": "relaying", "at_once": at_once}),
        ConnectEvent::Relayed => json!({"event": "relayed"}),
        // An event added to p2psc later: its line of text.
        other => json!({"event": "other", "text": other.to_string()}),
    }
}

impl Record<'_> {
    fn json(&self) -> Value {
        match self {
            Record::Step(event) => step_json(event),
            Record::Connected {
                took,
                after_match,
                path,
                peer,
                local,
                role,
            } => json!({
                "event": "connected",
                "ms": millis(*took),
                "after_match_ms": millis(*after_match),
                "path": path.to_string(),
                "peer": peer.to_string(),
                "local": local.to_string(),
                "role": role_name(*role),
            }),
            Record::Listening(addr) => json!({"event": "listening", "addr": addr.to_string()}),
            Record::Serving(to) => json!({"event": "serving", "to": to}),
            Record::Queued { from, waiting } => {
                json!({"event": "queued", "from": from.to_string(), "waiting": waiting})
            }
            Record::Carrying { local, peer } => {
                json!({"event": "carrying", "local": local.to_string(), "peer": peer.to_string()})
            }
            Record::Closed {
                local,
                sent,
                received,
            } => json!({
                "event": "closed", "local": local.to_string(), "sent": sent, "received": received,
            }),
            Record::Failed(failure) => failure_json("failed", failure),
            Record::KeyWritten { file, public_key } => json!({
                "event": "key_written",
                "file": file.display().to_string(),
                "public_key": public_key.to_hex(),
            }),
            Record::Done { sent, received } => {
                json!({"event": "done", "sent": sent, "received": received})
            }
        }
    }
}

impl fmt::Display for Record<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Record::Step(event) => fmt::Display::fmt(event, f),
            Record::Connected {
                took,
                after_match,
                path,
                peer,
                local,
                role,
            } => write!(
                f,
                "authenticated in {} ms ({} ms after the match); path {path}; peer {peer}; \
                 we are {}; local {local}",
                took.as_millis(),
                after_match.as_millis(),
                role_name(*role),
            ),
            Record::Listening(addr) => {
                write!(f, "listening on {addr}; each connection goes to the peer")
            }
            Record::Serving(to) => write!(f, "the peer's connections go to {to}"),
            Record::Queued { from, waiting } => write!(
                f,
                "connection from {from} waits for the peer ({waiting} in the queue)"
            ),
            Record::Carrying { local, peer } => write!(f, "carrying {local} <-> peer {peer}"),
            Record::Closed {
                local,
                sent,
                received,
            } => write!(
                f,
                "{local} closed: {sent} bytes to the peer, {received} from it"
            ),
            Record::Failed(failure) => write!(f, "failed: {failure}"),
            Record::KeyWritten { file, public_key } => write!(
                f,
                "wrote private key {} (mode 0600); public key {}",
                file.display(),
                public_key.to_hex()
            ),
            Record::Done { sent, received } => {
                write!(f, "done: {sent} bytes sent, {received} received")
            }
        }
    }
}
