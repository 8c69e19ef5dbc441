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
//!   for an older rustc, and when the flags or the environment choose another linker.
//!
//! Both only for a native build (host = target), where `getconf` speaks of the glibc linked in.

use std::env;
use std::process::Command;

/// The linker may be chosen by these: then it may not be rust-lld (`--icf=all` unknown to GNU ld).
const LINKER_VARS: [&str; 2] = ["RUSTC_LINKER", "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER"];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    for var in LINKER_VARS {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let features = env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let is = |key: &str, value: &str| env::var(key).is_ok_and(|v| v == value);
    // A native build only: `getconf` and the linker checks below describe the build host, which
    // is the target's glibc only when they are the same system (a cross build's sysroot may
    // hold an older glibc, whose start-up code would ignore packed relocations: a crash at start).
    if !features.split(',').any(|f| f == "crt-static")
        || !is("CARGO_CFG_TARGET_OS", "linux")
        || !is("CARGO_CFG_TARGET_ENV", "gnu")
        || env::var("HOST").ok() != env::var("TARGET").ok()
    {
        return;
    }
    // "glibc 2.36"
    if version(&output("getconf", "GNU_LIBC_VERSION"), 1) >= Some((2, 36)) {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    // "rustc 1.95.0 (59807616e 2026-04-14)", linking with its own lld: not when the flags or
    // the environment choose the linker (`-C linker=`, `-C linker-features=-lld`, `-fuse-ld`).
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let own_linker = !["linker", "fuse-ld", "link-self-contained"]
        .iter()
        .any(|f| flags.contains(f))
        && LINKER_VARS.iter().all(|v| env::var_os(v).is_none());
    if is("TARGET", "x86_64-unknown-linux-gnu")
        && own_linker
        && version(&output(&rustc, "--version"), 1) >= Some((1, 90))
    {
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
