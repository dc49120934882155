//! Build script: linker arguments for the firmware, and the build-time configuration (keys, addresses)
//! as Rust constants in `$OUT_DIR/config.rs`. See README.md for the variables.

use std::env;
use std::fs;
use std::path::PathBuf;

#[path = "../common/buildcfg.rs"]
mod buildcfg;

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    let target = env::var("TARGET").unwrap_or_default();

    // Firmware only: cortex-m-rt's linker script, with our memory.x next to it.
    if target.starts_with("thumb") {
        fs::copy("memory.x", out.join("memory.x")).unwrap();
        // cortex-m-rt's `device` feature includes this; the table itself is `board::__INTERRUPTS`.
        fs::write(
            out.join("device.x"),
            "PROVIDE(ETHERNET = DefaultHandler);\n",
        )
        .unwrap();
        println!("cargo:rustc-link-search={}", out.display());
        println!("cargo:rustc-link-arg-bins=--nmagic");
        println!("cargo:rustc-link-arg-bins=-Tlink.x");
        println!("cargo:rerun-if-changed=memory.x");
    }
    println!("cargo:rerun-if-changed=../common/buildcfg.rs");

    // Peer A of scripts/tap-lab.sh's and scripts/board-e2e.sh's home network; QEMU's MAC.
    let defaults = buildcfg::Defaults {
        ipv4: "192.168.1.2/24",
        gateway: "192.168.1.1",
        mac: "",
    };
    let config = buildcfg::from_env(&defaults);
    // Without the feature p2psc is built without its DHCP client (smaller).
    let dhcp = env::var("P2PSC_IPV4").is_ok_and(|v| v.trim() == "dhcp");
    if dhcp && env::var_os("CARGO_FEATURE_DHCP").is_none() {
        panic!("P2PSC_IPV4=dhcp needs the `dhcp` feature: cargo build --release --features dhcp");
    }
    if config.contains("TEST_KEYS: bool = true") && target.starts_with("thumb") {
        println!("cargo:warning=building with the public TEST device key (set P2PSC_KEY_SEED, P2PSC_ENTROPY_SECRET)");
    }
    fs::write(out.join("config.rs"), config).unwrap();
}
