//! One connection to the peer: the library's `connect_observed` with the tool's deadlines, progress
//! lines, and each error turned into its exit class and one line that says what to check.

use std::io;
use std::time::{Duration, Instant};

use p2psc::identity::Keypair;
use p2psc::proto::client::ConnectEvent;
use p2psc::wire::AbortReason;
use p2psc_tokio::{Config, Connection, Error};

use crate::args::ConnectArgs;
use crate::fail::{Class, Failure};
use crate::progress::{Progress, Record};

/// How far a connection got: decides what a deadline that ran out means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Reached {
    Start,
    MediatorUp,
    Registered,
    Matched,
    Established,
}

impl Reached {
    fn after(self, event: &ConnectEvent) -> Reached {
        let next = match event {
            ConnectEvent::MediatorConnected(_) | ConnectEvent::Challenged(_) => Reached::MediatorUp,
            ConnectEvent::Registered => Reached::Registered,
            ConnectEvent::Matched { .. }
            | ConnectEvent::Dialing(..)
            | ConnectEvent::Retrying(_)
            | ConnectEvent::Relaying { .. } => Reached::Matched,
            ConnectEvent::Established(_)
            | ConnectEvent::Authenticated(_)
            | ConnectEvent::Relayed => Reached::Established,
            // An event added to p2psc later says nothing about how far we got.
            _ => Reached::Start,
        };
        self.max(next)
    }
}

/// Slack past `--timeout` for the backstop around the whole connect (the protocol's own deadline
/// normally ends it first; the backstop also bounds resolving the mediator's name).
const BACKSTOP_SLACK: Duration = Duration::from_secs(2);

/// Random punch ports tried when the one drawn is taken.
const PORT_TRIES: usize = 3;

/// Connect to the peer, reporting each step; every wait is bounded by `--timeout`.
pub async fn dial(
    keypair: &Keypair,
    args: &ConnectArgs,
    progress: &Progress,
) -> Result<Connection, Failure> {
    let mut tries = 1;
    loop {
        let attempt = attempt(keypair, args, progress).await;
        match attempt.result {
            Ok(conn) => return Ok(conn),
            // The random punch port is taken (by a socket without SO_REUSEPORT): before anything
            // was sent, draw another. `--port` stays what it says.
            Err(Error::Bind(e))
                if e.kind() == io::ErrorKind::AddrInUse
                    && args.port.is_none()
                    && attempt.reached == Reached::Start
                    && tries < PORT_TRIES =>
            {
                tries += 1;
            }
            Err(e) => return Err(failure(&e, attempt.reached, args)),
        }
    }
}

/// One connect, and how far it got.
struct Attempt {
    result: Result<Connection, Error>,
    reached: Reached,
}

async fn attempt(keypair: &Keypair, args: &ConnectArgs, progress: &Progress) -> Attempt {
    let started = Instant::now();
    let mut reached = Reached::Start;
    let mut matched_at = None;
    let mediators = args.mediator_list();
    let connecting =
        p2psc_tokio::connect_observed(keypair, &args.peer, &mediators, config(args), |event| {
            reached = reached.after(&event);
            if let ConnectEvent::Matched { .. } = event {
                matched_at = Some(Instant::now());
            }
            progress.report(Record::Step(event));
        });
    let conn = match tokio::time::timeout(args.timeout + BACKSTOP_SLACK, connecting).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            return Attempt {
                result: Err(e),
                reached,
            }
        }
        // Only the name lookup is not bounded by the protocol's own deadline.
        Err(_) => {
            let e = Error::Connect(p2psc::Error::Timeout);
            return Attempt {
                result: Err(e),
                reached,
            };
        }
    };
    progress.report(Record::Connected {
        took: started.elapsed(),
        after_match: matched_at.map_or(Duration::ZERO, |at| at.elapsed()),
        path: conn.path(),
        peer: conn.peer(),
        local: conn.local(),
        role: conn.role(),
    });
    Attempt {
        result: Ok(conn),
        reached,
    }
}

/// Check that a mediator's name resolves (within `--timeout`), for an end that would otherwise find
/// out only when its first connection comes: one of several is enough, as for a connection.
pub async fn check_mediator(args: &ConnectArgs) -> Result<(), Failure> {
    let mut first = None;
    for name in &args.mediator {
        match resolves(name, args.timeout).await {
            Ok(()) => return Ok(()),
            Err(why) => {
                first.get_or_insert(format!("cannot resolve mediator {name}: {why}"));
            }
        }
    }
    let message = first.unwrap_or_else(|| "no mediator given".to_owned());
    Err(Failure::new(Class::MediatorUnreachable, message))
}

/// Whether `name` resolves to an address within `limit`; why not.
async fn resolves(name: &str, limit: Duration) -> Result<(), String> {
    match tokio::time::timeout(limit, tokio::net::lookup_host(name)).await {
        Ok(Ok(mut addrs)) => match addrs.next() {
            Some(_) => Ok(()),
            None => Err("no address".to_owned()),
        },
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {limit:?}")),
    }
}

fn protocol_duration(d: Duration) -> p2psc::time::Duration {
    p2psc::time::Duration::from_micros(d.as_micros().min(u128::from(u64::MAX)) as u64)
}

/// The protocol's deadlines from `--timeout` and `--wait`: no single step may outlast the whole.
fn config(args: &ConnectArgs) -> Config {
    let mut config = Config::default();
    let timeout = protocol_duration(args.timeout);
    let protocol = &mut config.protocol;
    protocol.timeout = timeout;
    protocol.register.wait_timeout = protocol_duration(args.wait).min(timeout);
    protocol.register.step_timeout = protocol.register.step_timeout.min(timeout);
    protocol.mediator_timeout = protocol.mediator_timeout.min(timeout);
    protocol.local_port = args.port;
    protocol.relay = args.relay;
    config.plaintext = args.plaintext;
    config
}

/// `--timeout` ran out: what was being waited for decides the class.
fn timed_out(reached: Reached, args: &ConnectArgs) -> Failure {
    let within = format!("within {:?}", args.timeout);
    let m = args.mediator_names();
    match reached {
        Reached::Start => Failure::new(
            Class::MediatorUnreachable,
            format!("{m} unreachable: no connection {within}"),
        ),
        Reached::MediatorUp => Failure::new(
            Class::MediatorFailed,
            format!("{m} did not answer {within} (is it a p2psc mediator?)"),
        ),
        Reached::Registered => peer_never_came(args, &within),
        Reached::Matched => Failure::new(
            Class::PunchFailed,
            format!("could not reach the peer {within} (a NAT that changes ports?)"),
        ),
        Reached::Established => Failure::new(
            Class::AuthFailed,
            format!("the peer did not authenticate {within}"),
        ),
    }
}

fn peer_never_came(args: &ConnectArgs, within: &str) -> Failure {
    Failure::new(
        Class::PeerNeverCame,
        format!(
            "peer {} did not come to {} {within} (is it running there, with this key as its peer?)",
            args.peer.to_hex(),
            args.mediator_names()
        ),
    )
}

/// A connect error as a failure.
fn failure(error: &Error, reached: Reached, args: &ConnectArgs) -> Failure {
    match error {
        Error::Resolve(..) => Failure::new(Class::MediatorUnreachable, error.to_string()),
        Error::Bind(e) => {
            Failure::new(Class::LocalIo, format!("cannot set up a local socket: {e}"))
        }
        Error::Connect(e) => protocol_failure(*e, reached, args),
    }
}

fn protocol_failure(error: p2psc::Error, reached: Reached, args: &ConnectArgs) -> Failure {
    use p2psc::Error as E;
    let m = args.mediator_names();
    let (class, message) = match error {
        E::MediatorUnreachable => (
            Class::MediatorUnreachable,
            format!("{m} unreachable: connection refused or no answer"),
        ),
        E::Aborted(AbortReason::Replaced) => (
            Class::MediatorFailed,
            format!("{m}: {error} (another p2psc runs with this key)"),
        ),
        E::MediatorClosed
        | E::Aborted(_)
        | E::UnsupportedVersion(_)
        | E::Mediator(_)
        | E::MediatorBusy => (Class::MediatorFailed, format!("{m}: {error}")),
        E::PeerNeverCame => {
            return peer_never_came(args, &format!("within {:?}", args.wait.min(args.timeout)))
        }
        E::NoRoute | E::PunchFailed => (Class::PunchFailed, error.to_string()),
        E::Relay(_) => (Class::PunchFailed, format!("no path to the peer: {error}")),
        E::AuthFailed(_) | E::PeerClosed => (Class::AuthFailed, error.to_string()),
        E::Timeout => return timed_out(reached, args),
        // Errors of the smoltcp shells (a local matter), and any added to p2psc later.
        _ => (Class::LocalIo, error.to_string()),
    };
    Failure::new(class, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ConnectArgs {
        ConnectArgs {
            key: "k.pem".into(),
            peer: Keypair::from_seed(&[2; 32]).public_key(),
            mediator: vec!["m.example:7777".into()],
            timeout: Duration::from_secs(5),
            wait: Duration::from_secs(60),
            port: None,
            plaintext: false,
            relay: p2psc::proto::client::RelayMode::Fallback,
        }
    }

    #[test]
    fn a_deadline_means_what_was_awaited() {
        let classes = [
            (Reached::Start, Class::MediatorUnreachable),
            (Reached::MediatorUp, Class::MediatorFailed),
            (Reached::Registered, Class::PeerNeverCame),
            (Reached::Matched, Class::PunchFailed),
            (Reached::Established, Class::AuthFailed),
        ];
        for (reached, class) in classes {
            let f = protocol_failure(p2psc::Error::Timeout, reached, &args());
            assert_eq!(f.class, class, "{reached:?}");
        }
    }

    #[test]
    fn no_step_outlasts_the_timeout() {
        let c = config(&args()).protocol;
        let five = p2psc::time::Duration::from_secs(5);
        assert_eq!(c.timeout, five);
        assert_eq!(c.register.wait_timeout, five);
        assert_eq!(c.register.step_timeout, five);
        assert_eq!(c.mediator_timeout, five);
    }

    #[test]
    fn messages_are_one_line() {
        use p2psc::Error as E;
        let errors = [
            E::MediatorUnreachable,
            E::Aborted(AbortReason::Replaced),
            E::MediatorBusy,
            E::PeerNeverCame,
            E::PunchFailed,
            E::PeerClosed,
            E::BadSocket,
        ];
        for e in errors {
            let f = protocol_failure(e, Reached::Start, &args());
            assert!(!f.message.contains('\n'), "{f:?}");
        }
        let reached = Reached::Start.after(&ConnectEvent::Registered);
        assert_eq!(reached, Reached::Registered);
    }
}
