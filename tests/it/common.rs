//! Helpers for the integration tests: run the real binary, read its output.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_dtrain"))
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(name)
}

/// Runs dtrain with `args`, feeding `stdin`; returns the output.
pub fn dtrain(args: &[&str], stdin: &[u8]) -> Output {
    dtrain_in(None, args, stdin)
}

pub fn dtrain_in(dir: Option<&Path>, args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    let mut child = cmd.spawn().expect("spawn dtrain");
    let mut si = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = si.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts the command failed with `code` and one error line containing `needle`.
pub fn assert_fails(o: &Output, code: i32, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected one error line, got: {err}");
    assert!(
        lines[0].starts_with("dtrain: ") && lines[0].contains(needle),
        "{err}"
    );
}

/// A `dtrain hub serve` process on a free loopback port, killed on drop.
pub struct Hub {
    pub url: String,
    child: std::process::Child,
}

impl Hub {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn start(root: &Path, extra: &[&str]) -> Hub {
        use std::io::BufRead;
        let mut child = Command::new(bin())
            .args([
                "hub",
                "serve",
                "--quiet",
                "--addr",
                "127.0.0.1:0",
                "--root",
                root.to_str().unwrap(),
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn hub");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .expect("hub prints its URL")
            .to_string();
        Hub { url, child }
    }

    pub fn stats(&self) -> serde_json::Value {
        let body = ureq::get(&format!("{}/_dtrain/stats", self.url))
            .call()
            .unwrap()
            .into_string()
            .unwrap();
        serde_json::from_str(&body).unwrap()
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copies a folder tree (fixtures into a scratch root the hub may write to).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(&name));
        } else {
            std::fs::copy(e.path(), to.join(&name)).unwrap();
        }
    }
}

/// Runs dtrain with extra environment variables.
pub fn dtrain_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(args).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// A loopback port that is free now, chosen below the kernel's ephemeral
/// range: ports from that range are also handed to every outgoing connection
/// and `:0` listener of the tests running alongside, so a port picked there can
/// be taken before the peer that is told to use it binds it.
#[allow(dead_code)]
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768)
        .clamp(12_000, 65_000);
    let (base, span) = (10_000u32, low - 10_000);
    let seed = std::process::id().wrapping_mul(7919)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
    loop {
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = base + seed.wrapping_add(k.wrapping_mul(104_729)) % span;
        if std::net::TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
            return port as u16;
        }
    }
}

/// One `[[peer]]` entry of a peers file, on a loopback port free right now.
#[allow(dead_code)]
pub fn peer_entry(name: &str, pubkey: &str) -> String {
    let port = free_port();
    format!("[[peer]]\nname = \"{name}\"\naddr = \"127.0.0.1:{port}\"\npubkey = \"{pubkey}\"\n\n")
}

/// Peak resident memory (VmHWM) of a process, in KiB.
#[allow(dead_code)]
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// Swarms hold this alone; tests with deadlines hold it shared (see main.rs).
static MACHINE: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// For a swarm: nothing with a deadline runs beside it (two cores).
pub fn alone() -> std::sync::RwLockWriteGuard<'static, ()> {
    MACHINE.write().unwrap_or_else(|e| e.into_inner())
}

/// For a test with deadlines: it may run beside other such tests, never
/// beside a swarm.
pub fn beside_others() -> std::sync::RwLockReadGuard<'static, ()> {
    MACHINE.read().unwrap_or_else(|e| e.into_inner())
}
