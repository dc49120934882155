//! The boards' `info!`: through defmt, or nothing without the board's `defmt` feature (the arguments are
//! still evaluated, so both builds see the same code). Included by each real-chip board's
//! `src/bin/punch.rs` with `#[macro_use] #[path]`, before `app.rs`, which uses it.

/// `info!` through defmt, or nothing without the `defmt` feature (arguments still evaluated).
macro_rules! info {
    ($fmt:literal $(, $arg:expr)* $(,)?) => {{
        #[cfg(feature = "defmt")]
        defmt::info!($fmt $(, $arg)*);
        #[cfg(not(feature = "defmt"))]
        let _ = ($(&$arg,)*);
    }};
}
