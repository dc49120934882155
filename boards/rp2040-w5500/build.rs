//! Linker arguments (memory.x, cortex-m-rt, embassy-rp, defmt), and the build-time configuration as
//! constants in `$OUT_DIR/config.rs` (README.md).

use std::env;
use std::fs;
use std::path::PathBuf;

#[path = "../common/buildcfg.rs"]
mod buildcfg;

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    fs::copy("memory.x", out.join("memory.x")).unwrap();
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rustc-link-arg-bins=--nmagic");
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
    println!("cargo:rustc-link-arg-bins=-Tlink-rp.x");
    if env::var_os("CARGO_FEATURE_DEFMT").is_some() {
        println!("cargo:rustc-link-arg-bins=-Tdefmt.x");
    }
    println!("cargo:rerun-if-changed=../common/buildcfg.rs");
    let defaults = buildcfg::Defaults {
        ipv4: "dhcp",
        gateway: "none",
        mac: "02:00:00:00:55:00",
    };
    fs::write(out.join("config.rs"), buildcfg::from_env(&defaults)).unwrap();
}
