//! Logging shim: `trace!` … `error!` go to `defmt` or `log`, whichever feature is on, or nowhere.
//!
//! Shape borrowed from embassy-net's `fmt.rs`. Format strings use only `{}` and `{:?}` so that both
//! backends accept them. With `defmt`, panics go through defmt too: `unwrap!` (instead of `unwrap` and
//! `expect`) and `panic!` send their message to the host as a defmt frame, so the format strings stay
//! out of the firmware. [`Bytes`] prints a byte string as hex through either backend.
#![macro_use]
#![allow(unused)]

use core::fmt;

#[cfg(all(feature = "defmt", feature = "log"))]
compile_error!("You may not enable both `defmt` and `log` features.");

macro_rules! trace {
    ($s:literal $(, $x:expr)* $(,)?) => {
        {
            #[cfg(feature = "log")]
            ::log::trace!($s $(, $x)*);
            #[cfg(feature = "defmt")]
            ::defmt::trace!($s $(, $x)*);
            #[cfg(not(any(feature = "log", feature="defmt")))]
            let _ = ($( & $x ),*);
        }
    };
}

macro_rules! debug {
    ($s:literal $(, $x:expr)* $(,)?) => {
        {
            #[cfg(feature = "log")]
            ::log::debug!($s $(, $x)*);
            #[cfg(feature = "defmt")]
            ::defmt::debug!($s $(, $x)*);
            #[cfg(not(any(feature = "log", feature="defmt")))]
            let _ = ($( & $x ),*);
        }
    };
}

macro_rules! info {
    ($s:literal $(, $x:expr)* $(,)?) => {
        {
            #[cfg(feature = "log")]
            ::log::info!($s $(, $x)*);
            #[cfg(feature = "defmt")]
            ::defmt::info!($s $(, $x)*);
            #[cfg(not(any(feature = "log", feature="defmt")))]
            let _ = ($( & $x ),*);
        }
    };
}

macro_rules! warn {
    ($s:literal $(, $x:expr)* $(,)?) => {
        {
            #[cfg(feature = "log")]
            ::log::warn!($s $(, $x)*);
            #[cfg(feature = "defmt")]
            ::defmt::warn!($s $(, $x)*);
            #[cfg(not(any(feature = "log", feature="defmt")))]
            let _ = ($( & $x ),*);
        }
    };
}

macro_rules! error {
    ($s:literal $(, $x:expr)* $(,)?) => {
        {
            #[cfg(feature = "log")]
            ::log::error!($s $(, $x)*);
            #[cfg(feature = "defmt")]
            ::defmt::error!($s $(, $x)*);
            #[cfg(not(any(feature = "log", feature="defmt")))]
            let _ = ($( & $x ),*);
        }
    };
}

macro_rules! panic {
    ($($x:tt)*) => {
        {
            #[cfg(not(feature = "defmt"))]
            ::core::panic!($($x)*);
            #[cfg(feature = "defmt")]
            ::defmt::panic!($($x)*);
        }
    };
}

/// `unwrap!(option_or_result)` or `unwrap!(option_or_result, "why it cannot fail")`: the value, or a
/// panic that names the expression and shows the error. With `defmt`, the error must implement
/// `defmt::Format`; turn any other error into an `Option` with `.ok()` first.
#[cfg(feature = "defmt")]
macro_rules! unwrap {
    ($($x:tt)*) => {
        ::defmt::unwrap!($($x)*)
    };
}

/// `unwrap!(option_or_result)` or `unwrap!(option_or_result, "why it cannot fail")`: the value, or a
/// panic that names the expression and shows the error. With `defmt`, the error must implement
/// `defmt::Format`; turn any other error into an `Option` with `.ok()` first.
#[cfg(not(feature = "defmt"))]
macro_rules! unwrap {
    ($arg:expr) => {
        match $crate::fmt::Try::into_result($arg) {
            ::core::result::Result::Ok(t) => t,
            ::core::result::Result::Err(e) => {
                ::core::panic!("unwrap of `{}` failed: {:?}", ::core::stringify!($arg), e);
            }
        }
    };
    ($arg:expr, $($msg:expr),+ $(,)? ) => {
        match $crate::fmt::Try::into_result($arg) {
            ::core::result::Result::Ok(t) => t,
            ::core::result::Result::Err(e) => {
                ::core::panic!(
                    "unwrap of `{}` failed: {}: {:?}",
                    ::core::stringify!($arg),
                    ::core::format_args!($($msg,)*),
                    e
                );
            }
        }
    };
}

/// The error of an `Option` that `unwrap!` found empty.
#[derive(Debug, Copy, Clone, Eq, PartialEq)]
pub struct NoneError;

/// What `unwrap!` accepts: an `Option` or a `Result`.
pub trait Try {
    /// The value unwrapped.
    type Ok;
    /// What is shown when there is no value.
    type Error;
    /// As a `Result`.
    fn into_result(self) -> Result<Self::Ok, Self::Error>;
}

impl<T> Try for Option<T> {
    type Ok = T;
    type Error = NoneError;

    #[inline]
    fn into_result(self) -> Result<T, NoneError> {
        self.ok_or(NoneError)
    }
}

impl<T, E> Try for Result<T, E> {
    type Ok = T;
    type Error = E;

    #[inline]
    fn into_result(self) -> Self {
        self
    }
}

/// A byte string shown as lowercase hex digits, two per byte and nothing between them (`00ff10`), by
/// `{}`, `{:?}` and `{:x}` alike. With `defmt` the bytes themselves go to the host, which prints them
/// as hex.
pub(crate) struct Bytes<'a>(pub &'a [u8]);

impl fmt::LowerHex for Bytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Display for Bytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(self, f)
    }
}

impl fmt::Debug for Bytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(self, f)
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for Bytes<'_> {
    fn format(&self, fmt: defmt::Formatter<'_>) {
        defmt::write!(fmt, "{=[u8]:02x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;

    #[test]
    fn bytes_print_as_hex() {
        let bytes = Bytes(&[0x00, 0xff, 0x10, 0x0a]);
        assert_eq!(format!("{bytes}"), "00ff100a");
        assert_eq!(format!("{bytes:?}"), "00ff100a");
        assert_eq!(format!("{bytes:x}"), "00ff100a");
        assert_eq!(format!("{}", Bytes(&[])), "");
    }

    #[test]
    fn unwrap_gives_the_value() {
        assert_eq!(unwrap!(Some(3)), 3);
        assert_eq!(unwrap!(Ok::<_, ()>(4), "never {}", "fails"), 4);
    }

    #[test]
    #[should_panic(expected = "unwrap of `None::<u8>` failed: NoneError")]
    fn unwrap_of_none_panics() {
        unwrap!(None::<u8>);
    }

    #[test]
    #[should_panic(expected = "unwrap of `Err::<u8, _>(7)` failed: the reason 1: 7")]
    fn unwrap_of_err_panics_with_the_reason() {
        unwrap!(Err::<u8, _>(7), "the reason {}", 1);
    }
}
