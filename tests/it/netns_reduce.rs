//! reduce between network namespaces joined by a bridge, each peer's uplink
//! rate-limited with tc tbf: the round completes at close to link rate.
//! Needs root and iproute2 (as on CI); elsewhere it says so and does nothing.
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::*;
use dtrain::tensors::{DType, GradMeta, TensorSpec};

pub(crate) struct Net {
    pub prefix: String,
    pub n: usize,
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = Command::new(root().join("scripts/netns.sh"))
            .args(["down", &self.prefix, &self.n.to_string()])
            .status();
    }
}

pub(crate) fn can_use_netns() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return false;
    }
    let probe = format!("dtrprobe{}", std::process::id());
    let ok = Command::new("ip")
        .args(["netns", "add", &probe])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let _ = Command::new("ip").args(["netns", "del", &probe]).status();
    ok
}

#[test]
fn four_peers_across_rate_limited_links() {
    let _machine = beside_others();
    if !can_use_netns() {
        eprintln!("SKIPPED: network namespaces need root and iproute2");
        return;
    }
    let (n, rate_mbit, n_elem) = (4usize, 400u32, 8_000_000usize);
    let net = Net {
        prefix: format!("dt{}", std::process::id() % 100000),
        n,
    };
    let st = Command::new(root().join("scripts/netns.sh"))
        .args(["up", &net.prefix, &n.to_string(), &rate_mbit.to_string()])
        .status()
        .unwrap();
    assert!(st.success(), "netns setup");
    let dir = tempfile::tempdir().unwrap();
    let mut toml = String::new();
    for i in 0..n {
        let key = dir.path().join(format!("p{i}.key"));
        let o = dtrain(&["keygen", "-o", key.to_str().unwrap()], b"");
        let pk = String::from_utf8(o.stdout).unwrap();
        toml += &format!(
            "[[peer]]\nname = \"p{i}\"\naddr = \"10.213.0.{}:7000\"\npubkey = \"{}\"\n\n",
            i + 1,
            pk.trim()
        );
        let g: Vec<f32> = (0..n_elem)
            .map(|k| ((k * (i + 3)) % 1013) as f32 * 1e-3)
            .collect();
        let mut meta = BTreeMap::new();
        GradMeta {
            model: "12".repeat(32),
            sequences: 1 + i as u64,
            tokens: 1,
        }
        .insert_into(&mut meta);
        dtrain::tensors::write_f32(
            dir.path().join(format!("p{i}.in")),
            &[TensorSpec::new("g", DType::F32, &[n_elem])],
            &[&g],
            &meta,
        )
        .unwrap();
    }
    std::fs::write(dir.path().join("peers.toml"), toml).unwrap();
    let p = |f: String| dir.path().join(f).to_str().unwrap().to_string();
    let kids: Vec<_> = (0..n)
        .map(|i| {
            Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &format!("{}-{i}", net.prefix),
                    bin().to_str().unwrap(),
                    "reduce",
                ])
                .args([
                    "--peers",
                    &p("peers.toml".into()),
                    "--me",
                    &format!("p{i}"),
                    "--key",
                    &p(format!("p{i}.key")),
                ])
                .args([
                    "--round",
                    "netns",
                    "--in",
                    &p(format!("p{i}.in")),
                    "--out",
                    &p(format!("p{i}.out")),
                ])
                .args([
                    "--transcript",
                    &p(format!("p{i}.tr.json")),
                    "--deadline",
                    "60",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for k in kids {
        let o = k.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let first = std::fs::read(dir.path().join("p0.out")).unwrap();
    for i in 1..n {
        assert_eq!(
            std::fs::read(dir.path().join(format!("p{i}.out"))).unwrap(),
            first
        );
    }
    let t: serde_json::Value =
        serde_json::from_slice(&std::fs::read(Path::new(&p("p0.tr.json".into()))).unwrap())
            .unwrap();
    let secs = t["body"]["seconds_reduce"].as_f64().unwrap();
    let bytes = (n_elem * 4) as f64;
    let ideal = 2.0 * (n as f64 - 1.0) / n as f64 * bytes / (rate_mbit as f64 * 1e6 / 8.0);
    println!("reduce over {rate_mbit} Mbit/s links: {secs:.3} s, ideal 2(n-1)/n*S/rate = {ideal:.3} s, ratio {:.2}", secs / ideal);
    // a physical bound, not a speed target: less than the ideal would mean the links were not limited
    assert!(
        secs > 0.9 * ideal,
        "{secs} s is faster than the links allow ({ideal} s)"
    );
}
