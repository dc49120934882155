//! Linker arguments (esp-hal's linkall.x, defmt) and the build-time configuration as constants in
//! `$OUT_DIR/config.rs` (README.md).

use std::env;
use std::fs;
use std::path::PathBuf;

#[path = "../common/buildcfg.rs"]
mod buildcfg;

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    println!("cargo:rustc-link-arg-bins=-Tlinkall.x");
    if env::var_os("CARGO_FEATURE_DEFMT").is_some() {
        println!("cargo:rustc-link-arg-bins=-Tdefmt.x");
    }
    println!("cargo:rerun-if-changed=../common/buildcfg.rs");
    // The MAC address is the chip's own (eFuse); the variable is ignored here.
    let defaults = buildcfg::Defaults {
        ipv4: "dhcp",
        gateway: "none",
        mac: "",
    };
    let mut config = buildcfg::from_env(&defaults);
    config.push_str(&buildcfg::wifi_from_env());
    fs::write(out.join("config.rs"), config).unwrap();
}
