//! Linker arguments (memory.x, cortex-m-rt, embassy-rp, defmt), the build-time configuration as
//! constants in `$OUT_DIR/config.rs`, and the CYW43439 NVRAM file as `$OUT_DIR/nvram.bin` (README.md).

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

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
    // The MAC address is the CYW43439's own; the variable is ignored here.
    let defaults = buildcfg::Defaults {
        ipv4: "dhcp",
        gateway: "none",
        mac: "",
    };
    let mut config = buildcfg::from_env(&defaults);
    config.push_str(&buildcfg::wifi_from_env());
    fs::write(out.join("config.rs"), config).unwrap();
    write_nvram(&out.join("nvram.bin"));
}

/// The CYW43439 NVRAM (the Pico W's radio board settings) named by `P2PSC_CYW43_NVRAM`, or, with the
/// `ci-build-only` feature, an empty placeholder that lets the image link but cannot run.
fn write_nvram(to: &Path) {
    println!("cargo:rerun-if-env-changed=P2PSC_CYW43_NVRAM");
    let bytes = match env::var_os("P2PSC_CYW43_NVRAM") {
        Some(path) => {
            println!("cargo:rerun-if-changed={}", path.to_string_lossy());
            fs::read(&path).unwrap_or_else(|e| {
                panic!(
                    "P2PSC_CYW43_NVRAM ({}): cannot read it: {e}",
                    path.to_string_lossy()
                )
            })
        }
        None if env::var_os("CARGO_FEATURE_CI_BUILD_ONLY").is_some() => Vec::new(),
        None => panic!(
            "P2PSC_CYW43_NVRAM is not set: point it at nvram_rp2040.bin from the embassy \
             repository's cyw43-firmware/ directory (see README.md), or build with \
             --features ci-build-only for an image that links but cannot run"
        ),
    };
    fs::write(to, bytes).unwrap();
}
