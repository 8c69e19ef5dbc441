//! Link options for the static binary (`RUSTFLAGS="-C target-feature=+crt-static"`, what
//! `Dockerfile.base` ships); every other build links as cargo does by default.
//!
//! Both make the binary smaller, and on a kernel that maps a file's pages by whole folios a
//! pod's RSS follows the binary's size (docs/benchmarks.md, "A lighter pod"):
//!
//! - `-z pack-relative-relocs` (DT_RELR): the 8,000 relative relocations a static-pie applies
//!   at start take 2 KB instead of 193 KB. The binary stays position-independent (ASLR). Only
//!   with glibc 2.36 or later, whose start-up code (linked into the binary) reads them: an
//!   older one would ignore them and the binary would crash at start.
//! - `--icf=all` (rust-lld, the default linker of x86_64-unknown-linux-gnu since Rust 1.90):
//!   identical functions, mostly generic instances that compile to the same code, are kept
//!   once. Two functions may then share an address, which Rust does not promise otherwise
//!   (Rust's Windows builds fold the same way by default). GNU ld has no such option: skipped
//!   for an older rustc.

use std::env;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let features = env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let is = |key: &str, value: &str| env::var(key).is_ok_and(|v| v == value);
    if !features.split(',').any(|f| f == "crt-static")
        || !is("CARGO_CFG_TARGET_OS", "linux")
        || !is("CARGO_CFG_TARGET_ENV", "gnu")
    {
        return;
    }
    // "glibc 2.36"
    if version(&output("getconf", "GNU_LIBC_VERSION"), 1) >= Some((2, 36)) {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    if is("TARGET", "x86_64-unknown-linux-gnu") && version(&output(&rustc, "--version"), 1) >= Some((1, 90)) {
        println!("cargo:rustc-link-arg-bins=-Wl,--icf=all");
    }
}

/// What `program arg` prints, empty if it cannot run.
fn output(program: &str, arg: &str) -> String {
    Command::new(program)
        .arg(arg)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// (major, minor) of the `word`th word of `text` ("1.95.0", "2.36").
fn version(text: &str, word: usize) -> Option<(u32, u32)> {
    let mut parts = text.split_whitespace().nth(word)?.split(['.', '-']);
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}
