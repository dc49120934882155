//! Linker arguments for the firmware examples, and only for them: `cargo build --example embassy_echo
//! --target thumbv7em-none-eabihf` links a Cortex-M image with cortex-m-rt's `link.x`, which includes a
//! `memory.x` memory map. The library itself is never linked here, and `rustc-link-arg-examples`
//! reaches no other target and no crate that depends on p2psc, so an application keeps its own
//! `memory.x` and linker arguments.

use std::env;
use std::fs;
use std::path::PathBuf;

/// The examples' memory map: an STM32F767ZI (2 MiB flash, 512 KiB RAM), roomy enough for an
/// unoptimised (`dev` profile) build. Your chip's goes in your firmware's own `memory.x`.
const EXAMPLE_MEMORY_X: &str = "MEMORY
{
  FLASH : ORIGIN = 0x08000000, LENGTH = 2048K
  RAM : ORIGIN = 0x20000000, LENGTH = 512K
}
";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let bare_metal_arm = env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none")
        && env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("arm");
    if !bare_metal_arm {
        return;
    }
    let dir =
        PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("examples-ld");
    fs::create_dir_all(&dir).expect("create OUT_DIR/examples-ld");
    fs::write(dir.join("memory.x"), EXAMPLE_MEMORY_X).expect("write memory.x");
    println!("cargo:rustc-link-arg-examples=-L{}", dir.display());
    println!("cargo:rustc-link-arg-examples=--nmagic");
    println!("cargo:rustc-link-arg-examples=-Tlink.x");
}
