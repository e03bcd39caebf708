//! Link flags for `dtrain` and `dtrain-redteam`.
//!
//! `-z pack-relative-relocs` (DT_RELR) stores the position-independent
//! binary's relative relocations as a bitmap instead of 24 bytes each: the
//! loader reads every relocation at start-up, so the table's pages were a
//! megabyte of every command's resident memory (`scripts/bench/startup.py`).
//! The binary then needs glibc ≥ 2.36 where it runs, so the flag is given only
//! when building natively against such a glibc (rust-lld and GNU ld ≥ 2.38
//! take it).
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    let host = std::env::var("HOST").unwrap_or_default();
    if target == host && target.ends_with("-linux-gnu") && host_glibc_at_least(2, 36) {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether this machine's glibc (`getconf GNU_LIBC_VERSION`: "glibc 2.36") is
/// at least `major.minor`; false when it cannot tell.
fn host_glibc_at_least(major: u32, minor: u32) -> bool {
    let Ok(out) = Command::new("getconf").arg("GNU_LIBC_VERSION").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text
        .trim()
        .trim_start_matches("glibc ")
        .split('.')
        .map(|p| p.parse::<u32>());
    match (parts.next(), parts.next()) {
        (Some(Ok(a)), Some(Ok(b))) => (a, b) >= (major, minor),
        _ => false,
    }
}
