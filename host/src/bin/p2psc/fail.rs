//! Why the tool stops: a class (which decides the exit code) and one line of text.

use std::fmt;
use std::process::ExitCode;

/// Every way the tool can fail, one exit code each (listed in `p2psc --help`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A bad option or value.
    Usage,
    /// The key file.
    KeyFile,
    /// The mediator cannot be reached (name, refused, no answer to connecting).
    MediatorUnreachable,
    /// The mediator aborted, was busy, closed, went silent or broke the protocol.
    MediatorFailed,
    /// The peer did not register in time.
    PeerNeverCame,
    /// No TCP connection to the peer before the punch deadline.
    PunchFailed,
    /// The peer did not authenticate, or rejected us.
    AuthFailed,
    /// A local socket, stdin/stdout, or the OS RNG.
    LocalIo,
    /// The connection to the peer broke after it was made.
    PeerLost,
}

impl Class {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Class::Usage => 1,
            Class::KeyFile => 2,
            Class::MediatorUnreachable => 3,
            Class::MediatorFailed => 4,
            Class::PeerNeverCame => 5,
            Class::PunchFailed => 6,
            Class::AuthFailed => 7,
            Class::LocalIo => 8,
            Class::PeerLost => 9,
        }
    }

    /// The name in `--json` output.
    pub fn name(self) -> &'static str {
        match self {
            Class::Usage => "usage",
            Class::KeyFile => "key_file",
            Class::MediatorUnreachable => "mediator_unreachable",
            Class::MediatorFailed => "mediator_failed",
            Class::PeerNeverCame => "peer_never_came",
            Class::PunchFailed => "punch_failed",
            Class::AuthFailed => "auth_failed",
            Class::LocalIo => "local_io",
            Class::PeerLost => "peer_lost",
        }
    }

    /// Whether a failure of this class concerns one attempt with the peer (a server side registers
    /// again), rather than this host's set-up or its mediator.
    pub fn is_per_attempt(self) -> bool {
        matches!(
            self,
            Class::PeerNeverCame | Class::PunchFailed | Class::AuthFailed | Class::PeerLost
        )
    }
}

/// A failure: its class and one line that says what went wrong and, where it helps, what to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Decides the exit code.
    pub class: Class,
    /// One line, no trailing newline.
    pub message: String,
}

impl Failure {
    /// A failure of `class` saying `message`.
    pub fn new(class: Class, message: impl Into<String>) -> Failure {
        Failure {
            class,
            message: message.into(),
        }
    }

    /// The exit code of this failure.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.class.code())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Class; 9] = [
        Class::Usage,
        Class::KeyFile,
        Class::MediatorUnreachable,
        Class::MediatorFailed,
        Class::PeerNeverCame,
        Class::PunchFailed,
        Class::AuthFailed,
        Class::LocalIo,
        Class::PeerLost,
    ];

    #[test]
    fn codes_are_distinct_and_listed_in_the_help() {
        for (i, class) in ALL.iter().enumerate() {
            assert_eq!(class.code() as usize, i + 1);
        }
        let help = crate::args::AFTER_HELP;
        for class in ALL {
            assert!(
                help.contains(&format!("\n  {}  ", class.code())),
                "{class:?}"
            );
        }
    }
}
