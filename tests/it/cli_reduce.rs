//! `dtrain reduce` as real processes on loopback: results, determinism across
//! peers, killed peers, hostile connections, deadlines.
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use dtrain::tensors::{DType, GradMeta, TensorFile, TensorSpec};

const MODEL: &str = "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e";

pub(crate) struct Swarm {
    pub dir: tempfile::TempDir,
    pub names: Vec<String>,
    pub pubs: Vec<String>,
    pub n_elem: usize,
}

/// A deterministic pseudo-random gradient.
pub(crate) fn gradient(seed: u64, n: usize) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            u * if i % 97 == 0 { 1e3 } else { 1.0 }
        })
        .collect()
}

impl Swarm {
    /// n peers with gradients of `n_elem` elements in two tensors; peer i has weight weights[i].
    pub(crate) fn new(n: usize, n_elem: usize, weights: &[u64]) -> Swarm {
        let dir = tempfile::tempdir().unwrap();
        let names: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
        let mut pubs = Vec::new();
        let mut toml = String::new();
        for name in &names {
            let key = dir.path().join(format!("{name}.key"));
            let o = dtrain(&["keygen", "-o", key.to_str().unwrap()], b"");
            assert!(o.status.success());
            let pk = String::from_utf8(o.stdout).unwrap().trim().to_string();
            toml += &format!(
                "[[peer]]\nname = \"{name}\"\naddr = \"127.0.0.1:{}\"\npubkey = \"{pk}\"\n\n",
                free_port()
            );
            pubs.push(pk);
        }
        std::fs::write(dir.path().join("peers.toml"), toml).unwrap();
        let s = Swarm {
            dir,
            names,
            pubs,
            n_elem,
        };
        for (i, &w) in weights.iter().enumerate().take(n) {
            s.write_grad(i, w, MODEL);
        }
        s
    }

    pub(crate) fn path(&self, f: &str) -> PathBuf {
        self.dir.path().join(f)
    }

    pub(crate) fn write_grad(&self, i: usize, weight: u64, model: &str) {
        let a = self.n_elem / 3;
        let specs = vec![
            TensorSpec::new("w", DType::F32, &[a]),
            TensorSpec::new("b", DType::F32, &[self.n_elem - a]),
        ];
        let g = gradient(i as u64 + 1, self.n_elem);
        let mut meta = BTreeMap::new();
        GradMeta {
            model: model.into(),
            sequences: weight,
            tokens: weight * 128,
        }
        .insert_into(&mut meta);
        dtrain::tensors::write_f32(
            self.path(&format!("{}.in", self.names[i])),
            &specs,
            &[&g[..a], &g[a..]],
            &meta,
        )
        .unwrap();
    }

    /// `reduce` and its arguments for peer i: its files, the round, --json.
    pub(crate) fn reduce_args(&self, i: usize, round: &str) -> Vec<String> {
        let n = &self.names[i];
        let p = |s: &str| self.path(&format!("{n}.{s}")).to_str().unwrap().to_string();
        let peers = self.path("peers.toml").to_str().unwrap().to_string();
        [
            "reduce",
            "--peers",
            &peers,
            "--me",
            n,
            "--key",
            &p("key"),
            "--round",
            round,
            "--in",
            &p("in"),
            "--out",
            &p("out"),
            "--transcript",
            &p("tr.json"),
            "--json",
        ]
        .map(String::from)
        .to_vec()
    }

    pub(crate) fn spawn(&self, i: usize, round: &str, extra: &[&str]) -> Child {
        self.spawn_env(i, round, extra, &[])
    }

    pub(crate) fn spawn_env(
        &self,
        i: usize,
        round: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Child {
        Command::new(bin())
            .args(self.reduce_args(i, round))
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    pub(crate) fn out(&self, i: usize) -> PathBuf {
        self.path(&format!("{}.out", self.names[i]))
    }

    /// Every peer's output holds the same bytes: their values.
    pub(crate) fn same_output_everywhere(&self, what: &str) -> Vec<f32> {
        let first = std::fs::read(self.out(0)).unwrap();
        for i in 1..self.names.len() {
            let other = std::fs::read(self.out(i)).unwrap();
            assert!(other == first, "{what}: peer {i} differs");
        }
        TensorFile::open(self.out(0))
            .unwrap()
            .flat_f32()
            .unwrap()
            .to_vec()
    }

    pub(crate) fn transcript(&self, i: usize) -> serde_json::Value {
        serde_json::from_slice(
            &std::fs::read(self.path(&format!("{}.tr.json", self.names[i]))).unwrap(),
        )
        .unwrap()
    }

    /// Σ wᵢ gᵢ / Σ wᵢ in f64 over `members`.
    pub(crate) fn expected(&self, members: &[usize], weights: &[u64]) -> Vec<f64> {
        let mut acc = vec![0f64; self.n_elem];
        let sw: u64 = members.iter().map(|&i| weights[i]).sum();
        for &i in members {
            let g = gradient(i as u64 + 1, self.n_elem);
            acc.iter_mut()
                .zip(&g)
                .for_each(|(a, &x)| *a += weights[i] as f64 * x as f64);
        }
        acc.iter_mut().for_each(|a| *a /= sw as f64);
        acc
    }
}

pub(crate) fn finish(mut c: Child, limit: Duration) -> (Option<i32>, String, String) {
    let t0 = Instant::now();
    loop {
        if let Some(st) = c.try_wait().unwrap() {
            let mut out = String::new();
            let mut err = String::new();
            c.stdout.take().unwrap().read_to_string(&mut out).unwrap();
            c.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            return (st.code(), out, err);
        }
        if t0.elapsed() > limit {
            let _ = c.kill();
            panic!("a peer hung past {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run_all(
    s: &Swarm,
    round: &str,
    extra: &[&str],
    deadline: f64,
) -> Vec<(Option<i32>, String, String)> {
    let dl = deadline.to_string();
    let mut args = vec!["--deadline", &dl];
    args.extend_from_slice(extra);
    let kids: Vec<Child> = (0..s.names.len())
        .map(|i| s.spawn(i, round, &args))
        .collect();
    kids.into_iter()
        .map(|c| finish(c, Duration::from_secs_f64(deadline + 10.0)))
        .collect()
}

#[test]
fn weighted_mean_for_2_to_8_peers_identical_everywhere() {
    let _machine = beside_others();
    for (n, n_elem) in [(2, 100_003), (3, 1_000_001), (5, 77_777), (8, 300_007)] {
        let weights: Vec<u64> = (0..n as u64).map(|i| 1 + i * 3 % 7).collect();
        let s = Swarm::new(n, n_elem, &weights);
        let hashes: Vec<_> = (0..n)
            .map(|i| dtrain::fsio::hash_file(s.path(&format!("p{i}.in"))).unwrap())
            .collect();
        for (code, _, err) in run_all(&s, &format!("r{n}"), &["--chunk", "4096"], 30.0) {
            assert_eq!(code, Some(0), "{err}");
        }
        let want = s.expected(&(0..n).collect::<Vec<_>>(), &weights);
        let first = std::fs::read(s.out(0)).unwrap();
        for (i, h) in hashes.iter().enumerate() {
            assert_eq!(
                std::fs::read(s.out(i)).unwrap(),
                first,
                "peer {i} of {n} differs"
            );
            assert_eq!(
                dtrain::fsio::hash_file(s.path(&format!("p{i}.in"))).unwrap(),
                *h,
                "input untouched"
            );
        }
        let f = TensorFile::open(s.out(0)).unwrap();
        let got = f.flat_f32().unwrap();
        for (k, (&g, &w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(
                g, w as f32,
                "element {k}: not the correctly rounded weighted mean"
            );
        }
        let meta = GradMeta::read(&f).unwrap();
        assert_eq!(meta.sequences, weights.iter().sum::<u64>());
        assert_eq!(f.metadata()["contributors"], s.names.join(","));
        let t = s.transcript(0);
        let peers = dtrain::reduce::peers::Peers::read(&s.path("peers.toml")).unwrap();
        let plan = dtrain::reduce::peers::Plan::new(&(0..n).collect::<Vec<_>>(), &peers, n_elem);
        let rh = dtrain::reduce::result_hash(got, &plan, 4096, dtrain::reduce::wire::Wire::F32);
        assert_eq!(
            t["body"]["result"],
            blake3::Hash::from(rh).to_hex().as_str(),
            "{n} peers: the output matches the transcript"
        );
        assert_eq!(t["body"]["confirmed_by"].as_array().unwrap().len(), n);
        // 2(n−1)/n·S each way, plus framing
        let sent: u64 = t["body"]["traffic"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["sent"].as_u64().unwrap())
            .sum();
        let ideal = 2.0 * (n as f64 - 1.0) / n as f64 * (n_elem * 4) as f64;
        assert!(
            (sent as f64) < ideal * 1.02 + 4096.0 * n as f64,
            "sent {sent}, ideal {ideal}"
        );
        assert!(sent as f64 > ideal * 0.98);
    }
}

#[test]
fn transcripts_are_signed_and_record_contributions() {
    let _machine = beside_others();
    let s = Swarm::new(3, 50_000, &[2, 3, 4]);
    for (code, _, err) in run_all(&s, "rt", &["--chunk", "4096"], 30.0) {
        assert_eq!(code, Some(0), "{err}");
    }
    let t0 = dtrain::reduce::transcript::Transcript::read(&s.path("p0.tr.json")).unwrap();
    let pk = dtrain::keys::PublicKey::from_hex(&s.pubs[0]).unwrap();
    t0.verify(Some(&pk)).unwrap();
    let mut forged = t0.clone();
    forged.body.sum_weight += 1;
    assert!(
        forged.verify(Some(&pk)).is_err(),
        "an edited transcript fails its signature"
    );
    // the owner's record of each contribution equals the sender's own record
    let ts: Vec<_> = (0..3)
        .map(|i| {
            dtrain::reduce::transcript::Transcript::read(&s.path(&format!("p{i}.tr.json"))).unwrap()
        })
        .collect();
    for (o, span) in ts[0].body.spans.iter().enumerate() {
        for c in &span.contributors {
            let owner_view = ts[o].body.spans[o]
                .contributors
                .iter()
                .find(|x| x.peer == c.peer)
                .unwrap()
                .blake3
                .clone();
            let sender = s.names.iter().position(|n| n == &c.peer).unwrap();
            let sender_view = ts[sender].body.spans[o]
                .contributors
                .iter()
                .find(|x| x.peer == c.peer)
                .unwrap()
                .blake3
                .clone();
            if o != sender {
                assert!(
                    owner_view.is_some() && owner_view == sender_view,
                    "span {o} from {}",
                    c.peer
                );
            }
        }
    }
}

#[test]
fn bf16_q8_and_ternary_are_identical_on_every_peer_and_close() {
    let _machine = beside_others();
    let weights = [1, 5, 2, 3];
    let s = Swarm::new(4, 200_003, &weights);
    let want = s.expected(&[0, 1, 2, 3], &weights);
    // one ternary round is coarse (1.9 bits a value, quantised twice); error
    // feedback over rounds makes up for it (wire::tests)
    for (wire, tol) in [("bf16", 0.01), ("q8", 0.03), ("ternary", 0.9)] {
        for (code, _, err) in run_all(&s, wire, &["--wire", wire, "--chunk", "8192"], 30.0) {
            assert_eq!(code, Some(0), "{err}");
        }
        let got = s.same_output_everywhere(wire);
        let num: f64 = got
            .iter()
            .zip(&want)
            .map(|(&g, &w)| (g as f64 - w).powi(2))
            .sum();
        let den: f64 = want.iter().map(|w| w * w).sum();
        assert!(
            (num / den).sqrt() < tol,
            "{wire}: relative error {}",
            (num / den).sqrt()
        );
    }
}

/// Peers on CPUs with different vector extensions (here: two peers forced to
/// the baseline loops) produce the bits that the same round produces when
/// every peer uses AVX-512 or AVX2: results never depend on the hardware.
#[test]
fn vector_widths_do_not_change_a_rounds_result() {
    let _machine = beside_others();
    let weights = [3, 1, 4, 1];
    let s = Swarm::new(4, 150_001, &weights);
    let values = |s: &Swarm| -> Vec<u32> {
        let f = TensorFile::open(s.out(0)).unwrap();
        f.flat_f32().unwrap().iter().map(|x| x.to_bits()).collect()
    };
    for wire in ["f32", "bf16", "q8", "ternary"] {
        let extra = ["--wire", wire, "--chunk", "8192", "--deadline", "30"];
        let mut runs = Vec::new();
        for baseline in [vec![], vec![1, 3], vec![0, 1, 2, 3]] {
            let kids: Vec<Child> = (0..4)
                .map(|i| {
                    let env: &[(&str, &str)] = if baseline.contains(&i) {
                        &[("DTRAIN_NO_SIMD", "1")]
                    } else {
                        &[]
                    };
                    s.spawn_env(i, wire, &extra, env)
                })
                .collect();
            for c in kids {
                let (code, _, err) = finish(c, Duration::from_secs(40));
                assert_eq!(code, Some(0), "{err}");
            }
            for i in 1..4 {
                assert_eq!(
                    std::fs::read(s.out(i)).unwrap(),
                    std::fs::read(s.out(0)).unwrap(),
                    "{wire}: peer {i} differs (baseline peers {baseline:?})"
                );
            }
            runs.push((baseline, values(&s)));
        }
        for (baseline, v) in &runs[1..] {
            assert!(
                v == &runs[0].1,
                "{wire}: baseline loops on peers {baseline:?} changed the result"
            );
        }
    }
}

/// Kills one peer at a random point of a slowed-down round, several times.
#[test]
fn survivors_finish_identical_when_a_peer_is_killed() {
    let _machine = beside_others();
    let weights = [3, 1, 4, 1, 5];
    let s = Swarm::new(5, 1_500_000, &weights);
    let hashes: Vec<_> = (0..5)
        .map(|i| dtrain::fsio::hash_file(s.path(&format!("p{i}.in"))).unwrap())
        .collect();
    let mut rng = 0x1234_5678u64;
    for round in 0..5 {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let victim = (rng >> 33) as usize % 5;
        // the round takes about 1.5 s at 5 MB/s per peer; kill anywhere in it
        let at = Duration::from_millis(100 + (rng >> 20) % 1400);
        for i in 0..5 {
            let _ = std::fs::remove_file(s.out(i));
        }
        let kids: Vec<Child> = (0..5)
            .map(|i| {
                s.spawn(
                    i,
                    &format!("k{round}"),
                    &["--deadline", "20", "--max-rate", "5", "--chunk", "32768"],
                )
            })
            .collect();
        std::thread::sleep(at);
        let mut results = Vec::new();
        for (i, mut c) in kids.into_iter().enumerate() {
            if i == victim {
                c.kill().unwrap();
                let _ = c.wait();
                results.push(None);
            } else {
                results.push(Some(c));
            }
        }
        let t0 = Instant::now();
        let done: Vec<_> = results
            .into_iter()
            .map(|c| c.map(|c| finish(c, Duration::from_secs(30))))
            .collect();
        assert!(
            t0.elapsed() < Duration::from_secs(25),
            "no survivor hangs past the deadline"
        );
        let survivors: Vec<usize> = (0..5).filter(|&i| i != victim).collect();
        let mut outputs = Vec::new();
        let all_err: String = survivors
            .iter()
            .map(|&i| done[i].as_ref().unwrap().2.clone())
            .collect::<Vec<_>>()
            .join("\n");
        for &i in &survivors {
            let (code, _, _) = done[i].as_ref().unwrap();
            assert_eq!(
                *code,
                Some(0),
                "round {round}, victim {victim} at {at:?}: {all_err}"
            );
            outputs.push(std::fs::read(s.out(i)).unwrap());
            let t = s.transcript(i);
            let members: Vec<&str> = t["body"]["members"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            if !members.contains(&s.names[victim].as_str()) {
                let failures = t["body"]["failures"].as_array().unwrap();
                assert!(
                    failures.iter().any(|f| f["peer"] == s.names[victim]),
                    "transcript names the failed peer: {t}"
                );
            }
        }
        assert!(
            outputs.windows(2).all(|w| w[0] == w[1]),
            "round {round}: survivors differ"
        );
        assert!(!s.out(victim).exists(), "the killed peer wrote no output");
        // the result is the weighted mean over whoever contributed
        let t = s.transcript(survivors[0]);
        let members: Vec<usize> = t["body"]["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                s.names
                    .iter()
                    .position(|n| n == v.as_str().unwrap())
                    .unwrap()
            })
            .collect();
        let want = s.expected(&members, &weights);
        let got = TensorFile::open(s.out(survivors[0])).unwrap();
        let got = got.flat_f32().unwrap();
        assert!(got.iter().zip(&want).all(|(&g, &w)| g == w as f32));
        for (i, h) in hashes.iter().enumerate() {
            assert_eq!(
                dtrain::fsio::hash_file(s.path(&format!("p{i}.in"))).unwrap(),
                *h
            );
        }
    }
}

#[test]
fn a_peer_that_never_comes_is_left_out_and_a_minority_cannot_finish() {
    let _machine = beside_others();
    let s = Swarm::new(3, 10_000, &[1, 1, 1]);
    let kids: Vec<Child> = (0..2)
        .map(|i| s.spawn(i, "absent", &["--deadline", "6"]))
        .collect();
    for c in kids {
        let (code, _, err) = finish(c, Duration::from_secs(20));
        assert_eq!(code, Some(0), "{err}");
    }
    let t = s.transcript(0);
    assert_eq!(t["body"]["members"], serde_json::json!(["p0", "p1"]));
    assert!(t["body"]["failures"][0]["peer"] == "p2");
    // alone, one peer is a minority of three: it must not finish
    let _ = std::fs::remove_file(s.out(0));
    let (code, _, err) = finish(
        s.spawn(0, "alone", &["--deadline", "4"]),
        Duration::from_secs(15),
    );
    assert_eq!(code, Some(4), "{err}");
    assert!(err.contains("fewer than --min-peers 2"), "{err}");
    assert!(!s.out(0).exists());
}

#[test]
fn wrong_key_wrong_layout_and_nan_are_refused() {
    let _machine = beside_others();
    let s = Swarm::new(3, 10_000, &[1, 2, 3]);
    // p2 signs with a key that is not its own
    let rogue = s.path("rogue.key");
    assert!(dtrain(&["keygen", "-o", rogue.to_str().unwrap()], b"")
        .status
        .success());
    let kids = vec![
        s.spawn(0, "wk", &["--deadline", "6"]),
        s.spawn(1, "wk", &["--deadline", "6"]),
        {
            let n = "p2";
            Command::new(bin())
                .args([
                    "reduce",
                    "--peers",
                    s.path("peers.toml").to_str().unwrap(),
                    "--me",
                    n,
                    "--key",
                    rogue.to_str().unwrap(),
                ])
                .args([
                    "--round",
                    "wk",
                    "--in",
                    s.path("p2.in").to_str().unwrap(),
                    "--out",
                    s.out(2).to_str().unwrap(),
                    "--deadline",
                    "6",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        },
    ];
    let res: Vec<_> = kids
        .into_iter()
        .map(|c| finish(c, Duration::from_secs(20)))
        .collect();
    assert_eq!(res[0].0, Some(0), "{}", res[0].2);
    assert_eq!(res[1].0, Some(0), "{}", res[1].2);
    assert_ne!(res[2].0, Some(0), "the impostor cannot finish");
    assert!(!s.out(2).exists());
    assert_eq!(
        s.transcript(0)["body"]["members"],
        serde_json::json!(["p0", "p1"])
    );

    // p2 computed its gradient on another model: it is the odd one out
    s.write_grad(2, 3, &"77".repeat(32));
    let res = run_all(&s, "layout", &[], 6.0);
    assert_eq!(res[0].0, Some(0), "{}", res[0].2);
    assert_eq!(res[2].0, Some(2), "{}", res[2].2);
    assert!(
        res[2].2.contains("another tensor layout or model"),
        "{}",
        res[2].2
    );

    // NaN in the input: refused before the round (exit 5)
    let a = s.n_elem / 3;
    let specs = vec![
        TensorSpec::new("w", DType::F32, &[a]),
        TensorSpec::new("b", DType::F32, &[s.n_elem - a]),
    ];
    let mut g = gradient(9, s.n_elem);
    g[7] = f32::NAN;
    let mut meta = BTreeMap::new();
    GradMeta {
        model: MODEL.into(),
        sequences: 1,
        tokens: 1,
    }
    .insert_into(&mut meta);
    dtrain::tensors::write_f32(s.path("p2.in"), &specs, &[&g[..a], &g[a..]], &meta).unwrap();
    let (code, _, err) = finish(
        s.spawn(2, "nan", &["--deadline", "3"]),
        Duration::from_secs(10),
    );
    assert_eq!(code, Some(5), "{err}");
}

/// A peer announcing a huge weight (its own peers file allows it) would make
/// the average its own gradient, or wrap the sum of weights: the others drop
/// it and average honestly. A receive-only peer's placeholder input may hold
/// anything; a peer's own weight above the cap is a usage error.
#[test]
fn an_inflated_weight_is_dropped_and_the_average_stays_honest() {
    let _machine = beside_others();
    let weights = [1, 2, 1 << 30];
    let s = Swarm::new(3, 10_000, &weights);
    let lenient = s.path("lenient.toml");
    let file = std::fs::read_to_string(s.path("peers.toml")).unwrap();
    std::fs::write(&lenient, format!("max_weight = {}\n\n{file}", 1u64 << 40)).unwrap();
    let attacker = {
        let p = |x: &str| s.path(&format!("p2.{x}")).to_str().unwrap().to_string();
        Command::new(bin())
            .args(["reduce", "--peers", lenient.to_str().unwrap(), "--me", "p2"])
            .args([
                "--key",
                &p("key"),
                "--round",
                "w",
                "--in",
                &p("in"),
                "--out",
                &p("out"),
            ])
            .args(["--deadline", "8"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let honest = [
        s.spawn(0, "w", &["--deadline", "8"]),
        s.spawn(1, "w", &["--deadline", "8"]),
    ];
    let res: Vec<_> = honest
        .into_iter()
        .chain([attacker])
        .map(|c| finish(c, Duration::from_secs(25)))
        .collect();
    assert_eq!(res[0].0, Some(0), "{}", res[0].2);
    assert_eq!(res[1].0, Some(0), "{}", res[1].2);
    assert_ne!(res[2].0, Some(0), "the attacker is out: {}", res[2].2);
    let want = s.expected(&[0, 1], &weights);
    let f = TensorFile::open(s.out(0)).unwrap();
    for (k, (&g, &w)) in f.flat_f32().unwrap().iter().zip(&want).enumerate() {
        assert_eq!(g, w as f32, "element {k} is not the honest mean");
    }
    let failures = s.transcript(0)["body"]["failures"].to_string();
    assert!(
        failures.contains("p2") && failures.contains("announced weight"),
        "{failures}"
    );

    // a receive-only peer's placeholder is never sent: NaN in it is no error
    let a = s.n_elem / 3;
    let specs = vec![
        TensorSpec::new("w", DType::F32, &[a]),
        TensorSpec::new("b", DType::F32, &[s.n_elem - a]),
    ];
    let nan = vec![f32::NAN; s.n_elem];
    let mut meta = BTreeMap::new();
    GradMeta {
        model: MODEL.into(),
        sequences: 1,
        tokens: 128,
    }
    .insert_into(&mut meta);
    dtrain::tensors::write_f32(s.path("p2.in"), &specs, &[&nan[..a], &nan[a..]], &meta).unwrap();
    let kids = [
        s.spawn(0, "w0", &["--deadline", "8"]),
        s.spawn(1, "w0", &["--deadline", "8"]),
        s.spawn(2, "w0", &["--deadline", "8", "--weight", "0"]),
    ];
    for (i, c) in kids.into_iter().enumerate() {
        let (code, _, err) = finish(c, Duration::from_secs(25));
        assert_eq!(code, Some(0), "peer {i}: {err}");
    }
    // and a weight above the cap is refused before the round
    let (code, _, err) = finish(
        s.spawn(
            2,
            "w1",
            &["--deadline", "3", "--weight", &(1u64 << 25).to_string()],
        ),
        Duration::from_secs(10),
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("max_weight"), "{err}");
}

/// A TCP connection to `to` from the local address `from` (another loopback
/// address than the peers', as a stranger's host would be).
fn connect_from(
    from: std::net::Ipv4Addr,
    to: std::net::SocketAddrV4,
) -> std::io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    let sa = |a: std::net::SocketAddrV4| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor this function owns until it
    // hands it to TcpStream (or closes it on error)
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let local = sa(std::net::SocketAddrV4::new(from, 0));
        let remote = sa(to);
        if libc::bind(fd, &local as *const _ as *const libc::sockaddr, len) != 0
            || libc::connect(fd, &remote as *const _ as *const libc::sockaddr, len) != 0
        {
            let e = std::io::Error::last_os_error();
            libc::close(fd);
            return Err(e);
        }
        Ok(TcpStream::from_raw_fd(fd))
    }
}

/// Dialers that announce a 200-byte Hello, then trickle a byte of it every
/// 300 ms (every read succeeds) and reconnect when dropped, from
/// a stranger's address and from the peers' own, until `stop`.
fn stalled_dialers(
    targets: Vec<std::net::SocketAddrV4>,
    from: std::net::Ipv4Addr,
    per_target: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<std::thread::JoinHandle<()>> {
    let mut threads = Vec::new();
    for t in targets {
        for _ in 0..per_target {
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Ok(mut c) = connect_from(from, t) {
                        // a plausible Hello length, then its bytes one at a time
                        let _ = c.write_all(&200u32.to_le_bytes());
                        while !stop.load(std::sync::atomic::Ordering::Relaxed)
                            && c.write_all(b"D").is_ok()
                        {
                            std::thread::sleep(Duration::from_millis(300));
                        }
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }));
        }
    }
    threads
}

/// 40 stalled dialers per peer from a stranger's address, and a few from the
/// peers' own address, would fill every handshake slot (each read succeeds,
/// so a per-read timeout never fires): strangers are refused at once, each
/// address has its share, and a handshake has one deadline.
#[test]
fn stalled_dialers_cannot_keep_the_peers_out() {
    let _machine = beside_others();
    let s = Swarm::new(3, 10_000, &[1, 2, 3]);
    let peers = dtrain::reduce::peers::Peers::read(&s.path("peers.toml")).unwrap();
    let targets: Vec<std::net::SocketAddrV4> =
        peers.list.iter().map(|p| p.addr.parse().unwrap()).collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // the flood starts first: the peers' listeners come up into it
    let mut flood = stalled_dialers(
        targets.clone(),
        "127.0.0.2".parse().unwrap(),
        40,
        stop.clone(),
    );
    let kids: Vec<Child> = (0..3)
        .map(|i| s.spawn(i, "flood", &["--deadline", "20"]))
        .collect();
    flood.extend(stalled_dialers(
        targets,
        "127.0.0.1".parse().unwrap(),
        3,
        stop.clone(),
    ));
    let res: Vec<_> = kids
        .into_iter()
        .map(|c| finish(c, Duration::from_secs(40)))
        .collect();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in flood {
        t.join().unwrap();
    }
    for (i, (code, _, err)) in res.iter().enumerate() {
        assert_eq!(*code, Some(0), "peer {i}: {err}");
    }
    let first = std::fs::read(s.out(0)).unwrap();
    assert!((1..3).all(|i| std::fs::read(s.out(i)).unwrap() == first));
}

/// An authenticated member that reports an honest peer as unreachable used to
/// get it dropped from the round; now its unsupported report drops only itself,
/// and the transcript records who reported whom.
#[test]
fn a_false_failure_report_evicts_only_its_maker() {
    let _machine = beside_others();
    let weights = [1, 2, 3, 4];
    let s = Swarm::new(4, 20_000, &weights);
    let kids: Vec<Child> = (0..4)
        .map(|i| {
            let fault: &[(&str, &str)] = if i == 3 {
                &[("DTRAIN_REDUCE_FAULT", "false-report:p1")]
            } else {
                &[]
            };
            s.spawn_env(i, "liar", &["--deadline", "15"], fault)
        })
        .collect();
    let res: Vec<_> = kids
        .into_iter()
        .map(|c| finish(c, Duration::from_secs(30)))
        .collect();
    for (i, (code, _, err)) in res.iter().enumerate().take(3) {
        assert_eq!(*code, Some(0), "p{i}: {err}");
    }
    assert_eq!(res[3].0, Some(4), "the liar is out: {}", res[3].2);
    let t = s.transcript(1);
    assert_eq!(t["body"]["members"], serde_json::json!(["p0", "p1", "p2"]));
    // p3 is out by the others' judgement or, having judged itself the same
    // way a moment earlier, by leaving: the record of its report is what counts
    let failures = t["body"]["failures"].to_string();
    assert!(
        failures.contains("\"p3\"") && !failures.contains("\"p1\""),
        "{failures}"
    );
    let reports = t["body"]["reports"].as_array().unwrap();
    assert!(
        reports
            .iter()
            .any(|r| r["by"] == "p3" && r["about"] == "p1"),
        "{reports:?}"
    );
    let want = s.expected(&[0, 1, 2], &weights);
    let got = TensorFile::open(s.out(1)).unwrap();
    for (k, (&g, &w)) in got.flat_f32().unwrap().iter().zip(&want).enumerate() {
        assert_eq!(g, w as f32, "element {k}");
    }
}

/// A member sending syncs for made-up attempt numbers cannot grow the others'
/// memory: control frames outside a small window of attempts are dropped.
#[test]
fn made_up_attempt_numbers_do_not_grow_a_peer() {
    let _machine = beside_others();
    let s = Swarm::new(3, 20_000, &[1, 2, 3]);
    // p0's peak memory, and the bytes p0 received from p2
    let run = |round: &str, fault: &str| -> (u64, u64) {
        let kids: Vec<Child> = (0..3)
            .map(|i| {
                let env: &[(&str, &str)] = if i == 2 {
                    &[("DTRAIN_REDUCE_FAULT", fault)]
                } else {
                    &[]
                };
                s.spawn_env(i, round, &["--deadline", "30"], env)
            })
            .collect();
        let res: Vec<_> = kids
            .into_iter()
            .map(|c| finish(c, Duration::from_secs(60)))
            .collect();
        for (code, _, err) in &res {
            assert_eq!(*code, Some(0), "{err}");
        }
        let v: serde_json::Value = serde_json::from_str(res[0].1.trim()).unwrap();
        let t = s.transcript(0);
        let from_p2 = t["body"]["traffic"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["peer"] == "p2")
            .map(|x| x["received"].as_u64().unwrap())
            .unwrap();
        (v["peak_anon_rss_bytes"].as_u64().unwrap(), from_p2)
    };
    let (calm, calm_bytes) = run("calm", "");
    let (flooded, flood_bytes) = run("flood", "sync-flood:200000");
    println!(
        "peak anon RSS of a peer: calm {} MiB, under 200 000 made-up syncs {} MiB ({} MB of them received)",
        calm >> 20,
        flooded >> 20,
        (flood_bytes - calm_bytes) / 1_000_000
    );
    assert!(
        flood_bytes > calm_bytes + 5_000_000,
        "the flood did not arrive"
    );
    assert!(
        flooded < calm + (24 << 20),
        "200 000 made-up syncs grew a peer from {} to {} MiB",
        calm >> 20,
        flooded >> 20
    );
}

/// Hostile connections during a round: oversized length prefixes, random
/// bytes, connections that send nothing. The round completes; no peer crashes or balloons.
#[test]
fn hostile_connections_are_rejected_and_the_round_goes_on() {
    let _machine = beside_others();
    let s = Swarm::new(3, 2_000_000, &[1, 2, 3]);
    let peers = dtrain::reduce::peers::Peers::read(&s.path("peers.toml")).unwrap();
    let target = peers.list[0].addr.clone();

    // the round itself, with attackers hammering p0
    let kids: Vec<Child> = (0..3)
        .map(|i| s.spawn(i, "hostile", &["--deadline", "20", "--max-rate", "20"]))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut attackers = Vec::new();
    // oversized length prefix
    attackers.push(std::thread::spawn({
        let t = target.clone();
        move || {
            if let Ok(mut c) = TcpStream::connect(&t) {
                let _ = c.write_all(&[0xff, 0xff, 0xff, 0x7f]);
                let _ = c.write_all(&[0u8; 1024]);
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }));
    // random bytes
    attackers.push(std::thread::spawn({
        let t = target.clone();
        move || {
            if let Ok(mut c) = TcpStream::connect(&t) {
                let junk: Vec<u8> = gradient(77, 250_000)
                    .iter()
                    .map(|x| x.to_bits() as u8)
                    .collect();
                let _ = c.write_all(&[0x10, 0, 0, 0]);
                let _ = c.write_all(&junk);
            }
        }
    }));
    // slowloris: connects, sends nothing, keeps the socket open
    let _slow: Vec<TcpStream> = (0..20)
        .filter_map(|_| TcpStream::connect(&target).ok())
        .collect();
    for a in attackers {
        a.join().unwrap();
    }
    let res: Vec<_> = kids
        .into_iter()
        .map(|c| finish(c, Duration::from_secs(40)))
        .collect();
    for (code, out, err) in &res {
        assert_eq!(*code, Some(0), "{err}");
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["members"].as_array().unwrap().len(), 3);
        assert!(
            v["peak_anon_rss_bytes"].as_u64().unwrap() < 200 << 20,
            "{v}"
        );
    }
    let first = std::fs::read(s.out(0)).unwrap();
    assert!((1..3).all(|i| std::fs::read(s.out(i)).unwrap() == first));
}

/// A handshake recorded in one round and replayed in another is refused, and a
/// peer that is not in the file cannot join.
#[test]
fn replayed_and_unknown_handshakes_are_refused() {
    let _machine = beside_others();
    let s = Swarm::new(2, 1000, &[1, 1]);
    let peers = dtrain::reduce::peers::Peers::read(&s.path("peers.toml")).unwrap();
    let k0 = dtrain::keys::Key::load(&s.path("p0.key")).unwrap();
    let k1 = dtrain::keys::Key::load(&s.path("p1.key")).unwrap();
    // record what p1 sends when it authenticates to p0 in round "r-old"
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let peers2 = peers.clone();
    let server = std::thread::spawn(move || {
        let (st, _) = l.accept().unwrap();
        let mut rec = Recorder {
            inner: st,
            read: Vec::new(),
        };
        let local = dtrain::reduce::handshake::Local {
            round: "r-old",
            me: 0,
            key: &k0,
            peers: &peers2,
            weight: 1,
            tokens: 1,
            layout: [0; 32],
        };
        let ok = dtrain::reduce::handshake::accept(&mut rec, &local).is_ok();
        (ok, rec.read)
    });
    let mut c = TcpStream::connect(addr).unwrap();
    let local = dtrain::reduce::handshake::Local {
        round: "r-old",
        me: 1,
        key: &k1,
        peers: &peers,
        weight: 1,
        tokens: 1,
        layout: [0; 32],
    };
    assert!(dtrain::reduce::handshake::initiate(&mut c, &local, 0).is_ok());
    let (ok, recorded) = server.join().unwrap();
    assert!(ok);

    // round "r-new": p0 runs for real; replay p1's recorded bytes at it, then let the real p1 join
    let p0 = s.spawn(0, "r-new", &["--deadline", "8"]);
    let target = peers.list[0].addr.clone();
    let t0 = Instant::now();
    let mut replay = loop {
        match TcpStream::connect(&target) {
            Ok(c) => break c,
            Err(e) if t0.elapsed() > Duration::from_secs(5) => panic!("p0 never listened: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let _ = replay.write_all(&recorded);
    let mut answer = Vec::new();
    replay
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let _ = replay.read_to_end(&mut answer);
    // an unknown peer (a key and name not in the file)
    let stranger = dtrain::keys::Key::generate();
    let mut toml = std::fs::read_to_string(s.path("peers.toml")).unwrap();
    toml += &format!(
        "[[peer]]\nname = \"stranger\"\naddr = \"127.0.0.1:1\"\npubkey = \"{}\"\n",
        stranger.public().to_hex()
    );
    let their_view = dtrain::reduce::peers::Peers::parse(&toml, "stranger").unwrap();
    let mut c = TcpStream::connect(&target).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let local = dtrain::reduce::handshake::Local {
        round: "r-new",
        me: 2,
        key: &stranger,
        peers: &their_view,
        weight: 1,
        tokens: 1,
        layout: [0; 32],
    };
    assert!(
        dtrain::reduce::handshake::initiate(&mut c, &local, 0).is_err(),
        "a stranger is refused"
    );
    let p1 = s.spawn(1, "r-new", &["--deadline", "8"]);
    for c in [p0, p1] {
        let (code, out, err) = finish(c, Duration::from_secs(20));
        assert_eq!(code, Some(0), "{err}");
        assert!(out.contains("\"members\":[\"p0\",\"p1\"]"), "{out}");
    }
    // the replay got no more than p0's Ack (4-byte length + body) before being dropped
    assert!(answer.len() < 512, "{} bytes", answer.len());
}

struct Recorder {
    inner: TcpStream,
    read: Vec<u8>,
}
impl Read for Recorder {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(b)?;
        self.read.extend_from_slice(&b[..n]);
        Ok(n)
    }
}
impl Write for Recorder {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.inner.write(b)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// `dtrain peers`: the scripts' one reader of peers files. JSON of the whole
/// file, a restricted file in the original order that reduce accepts, and an
/// unknown member or a broken file refused with one line.
#[test]
fn peers_prints_the_file_and_restricts_it_to_a_rounds_members() {
    let _machine = beside_others();
    let s = Swarm::new(3, 4096, &[1, 2, 3]);
    let file = s.path("peers.toml");
    let o = dtrain(&["peers", file.to_str().unwrap()], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let names: Vec<&str> = v["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["p0", "p1", "p2"]);
    assert_eq!(v["peers"][1]["pubkey"], s.pubs[1].as_str());
    let round = s.path("round.toml");
    let o = dtrain(
        &[
            "peers",
            file.to_str().unwrap(),
            "--only",
            "p2,p0",
            "--toml",
            "-o",
            round.to_str().unwrap(),
        ],
        b"",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let two = dtrain::reduce::peers::Peers::read(&round).unwrap();
    assert_eq!(
        two.list.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["p0", "p2"]
    );
    // the restricted file is a round's peers file: p0 and p2 average without p1
    std::fs::copy(&round, s.path("peers.toml")).unwrap();
    let (c0, c2) = (s.spawn(0, "only", &[]), s.spawn(2, "only", &[]));
    for c in [c0, c2] {
        let (code, _, err) = finish(c, Duration::from_secs(60));
        assert_eq!(code, Some(0), "{err}");
    }
    let o = dtrain(&["peers", file.to_str().unwrap(), "--only", "p9"], b"");
    assert_fails(&o, 2, "no peer named 'p9'");
    std::fs::write(s.path("bad.toml"), "[[peer]]\nname = 3\n").unwrap();
    assert_fails(
        &dtrain(&["peers", s.path("bad.toml").to_str().unwrap()], b""),
        2,
        "bad.toml",
    );
}

/// Error feedback: each peer keeps what the ternary wire lost in its own
/// residual file and adds it next round. Over rounds of the same gradients
/// the mean of the outputs tends to the exact average (one ternary round
/// alone is far off), every peer holds the same bytes each round, and the
/// files are refused when they do not fit.
#[test]
fn ternary_with_residuals_converges_and_misfit_residuals_are_refused() {
    let _machine = beside_others();
    let weights = [2u64, 1, 3];
    let s = Swarm::new(3, 6_400, &weights);
    // gradients without the helper's spikes: one ternary round then keeps
    // little of them, and error feedback has everything to make up
    let smooth = |i: usize| -> Vec<f32> {
        let g = gradient(i as u64 + 1, s.n_elem);
        g.iter()
            .enumerate()
            .map(|(k, x)| if k % 97 == 0 { x / 1e3 } else { *x })
            .collect()
    };
    let a = s.n_elem / 3;
    let specs = vec![
        TensorSpec::new("w", DType::F32, &[a]),
        TensorSpec::new("b", DType::F32, &[s.n_elem - a]),
    ];
    let mut want = vec![0f64; s.n_elem];
    for (i, &w) in weights.iter().enumerate() {
        let g = smooth(i);
        let mut meta = BTreeMap::new();
        GradMeta {
            model: MODEL.into(),
            sequences: w,
            tokens: w * 128,
        }
        .insert_into(&mut meta);
        dtrain::tensors::write_f32(
            s.path(&format!("p{i}.in")),
            &specs,
            &[&g[..a], &g[a..]],
            &meta,
        )
        .unwrap();
        for (acc, x) in want.iter_mut().zip(&g) {
            *acc += w as f64 * *x as f64 / 6.0;
        }
    }
    let residual = |i: usize| {
        s.path(&format!("p{i}.residual"))
            .to_str()
            .unwrap()
            .to_string()
    };
    let round = |r: &str, extra: &[&str]| -> Vec<(Option<i32>, String, String)> {
        let kids: Vec<Child> = (0..3)
            .map(|i| {
                let res = residual(i);
                let mut args = vec!["--deadline", "20", "--wire", "ternary", "--residual", &res];
                args.extend_from_slice(extra);
                s.spawn(i, r, &args)
            })
            .collect();
        kids.into_iter()
            .map(|c| finish(c, Duration::from_secs(30)))
            .collect()
    };
    let rel = |got: &[f64]| -> f64 {
        let num: f64 = got.iter().zip(&want).map(|(g, w)| (g - w).powi(2)).sum();
        (num / want.iter().map(|w| w * w).sum::<f64>()).sqrt()
    };
    let mut sum = vec![0f64; want.len()];
    let rounds = 16;
    let mut first = 0.0;
    for k in 0..rounds {
        for (code, _, err) in round(&format!("ef{k}"), &[]) {
            assert_eq!(code, Some(0), "round {k}: {err}");
        }
        let got = s.same_output_everywhere(&format!("round {k}"));
        for (a, &x) in sum.iter_mut().zip(&got) {
            *a += x as f64;
        }
        if k == 0 {
            first = rel(&sum);
        }
    }
    let mean: Vec<f64> = sum.iter().map(|a| a / rounds as f64).collect();
    let after = rel(&mean);
    eprintln!(
        "ternary with error feedback: one round {first:.3}, the mean of {rounds} rounds {after:.3}"
    );
    assert!(
        after < first / 4.0,
        "one round {first:.3}, the mean of {rounds} {after:.3}"
    );

    // the same round id again would add its residual twice
    let res = round(&format!("ef{}", rounds - 1), &[]);
    assert_eq!(res[0].0, Some(2), "{}", res[0].2);
    assert!(res[0].2.contains("written by round"), "{}", res[0].2);
    // f32 loses nothing; another layout is not this gradient's residual
    let (code, _, err) = finish(
        s.spawn(
            0,
            "lossless",
            &["--deadline", "3", "--residual", &residual(0)],
        ),
        Duration::from_secs(10),
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("lossy --wire"), "{err}");
    let other = s.path("other.residual");
    let spec = [TensorSpec::new("w", DType::F32, &[7])];
    let meta = BTreeMap::from([
        ("round".to_string(), "x".to_string()),
        ("wire".to_string(), "ternary".to_string()),
    ]);
    dtrain::tensors::write_f32(&other, &spec, &[&[0.0; 7]], &meta).unwrap();
    let before = std::fs::read(&other).unwrap();
    let (code, _, err) = finish(
        s.spawn(
            0,
            "layout",
            &[
                "--deadline",
                "3",
                "--wire",
                "ternary",
                "--residual",
                other.to_str().unwrap(),
            ],
        ),
        Duration::from_secs(10),
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("another layout"), "{err}");
    assert_eq!(
        std::fs::read(&other).unwrap(),
        before,
        "a refused residual is left as it was"
    );
}

/// An owner whose f32 result holds a NaN (signed with its session keys, so
/// every frame authenticates) is dropped by every member it sent it to, each
/// checking the bytes as they came before writing them to its output; the
/// other four finish without it, identical and finite, never with the NaN.
#[test]
fn an_owner_sending_a_nan_result_is_dropped_and_the_rest_finish_finite() {
    let _machine = beside_others();
    let s = Swarm::new(5, 20_000, &[1, 2, 3, 4, 5]);
    let extra = ["--deadline", "20"];
    let kids: Vec<Child> = (0..5)
        .map(|i| {
            let fault: &[(&str, &str)] = if i == 4 {
                &[("DTRAIN_REDUCE_FAULT", "nan-result")]
            } else {
                &[]
            };
            s.spawn_env(i, "nanresult", &extra, fault)
        })
        .collect();
    let res: Vec<_> = kids
        .into_iter()
        .map(|c| finish(c, Duration::from_secs(30)))
        .collect();
    for (i, (code, _, err)) in res.iter().enumerate() {
        assert_ne!(*code, Some(101), "p{i} panicked: {err}");
    }
    assert!(
        (0..4).any(|i| res[i]
            .2
            .contains("dropped p4: its averaged span contains NaN or Inf")),
        "a member names p4's NaN: {:?}",
        res.iter().map(|r| &r.2).collect::<Vec<_>>()
    );
    assert_ne!(res[4].0, Some(0), "the owner of the NaN cannot finish");
    let first = std::fs::read(s.out(0)).unwrap();
    for (i, (code, _, err)) in res.iter().enumerate().take(4) {
        assert_eq!(*code, Some(0), "p{i}: {err}");
        assert_eq!(std::fs::read(s.out(i)).unwrap(), first, "p{i} differs");
    }
    let t = TensorFile::open(s.out(0)).unwrap();
    assert!(t.flat_f32().unwrap().iter().all(|x| x.is_finite()));
    assert_eq!(
        s.transcript(0)["body"]["members"],
        serde_json::json!(["p0", "p1", "p2", "p3"])
    );
}

/// A member whose ternary contribution does not decode (a trit code above 2,
/// signed with its session key) is dropped by the owner it sent it to, never
/// a panic. As for any single broken link, the membership rule cannot tell
/// which end lies and drops both (the sender and the owner that reported
/// it); the other three of five finish, identical.
#[test]
fn a_ternary_chunk_that_does_not_decode_drops_its_sender() {
    let _machine = beside_others();
    let s = Swarm::new(5, 20_000, &[1, 2, 3, 4, 5]);
    let extra = ["--deadline", "20", "--wire", "ternary"];
    let kids: Vec<Child> = (0..5)
        .map(|i| {
            let fault: &[(&str, &str)] = if i == 4 {
                &[("DTRAIN_REDUCE_FAULT", "corrupt-chunk")]
            } else {
                &[]
            };
            s.spawn_env(i, "corrupt", &extra, fault)
        })
        .collect();
    let res: Vec<_> = kids
        .into_iter()
        .map(|c| finish(c, Duration::from_secs(30)))
        .collect();
    // the owner p4's first chunk went to reports it
    let reporter = (0..4)
        .find(|&i| res[i].2.contains("dropped p4: malformed chunk"))
        .expect("an owner names p4's malformed chunk");
    for (i, (code, _, err)) in res.iter().enumerate() {
        assert_ne!(*code, Some(101), "p{i} panicked: {err}");
    }
    assert_ne!(res[4].0, Some(0), "the corrupter cannot finish");
    let rest: Vec<usize> = (0..4).filter(|&i| i != reporter).collect();
    let first = std::fs::read(s.out(rest[0])).unwrap();
    for &i in &rest {
        assert_eq!(res[i].0, Some(0), "p{i}: {}", res[i].2);
        assert_eq!(std::fs::read(s.out(i)).unwrap(), first, "p{i} differs");
    }
    let names: Vec<String> = rest.iter().map(|i| format!("p{i}")).collect();
    assert_eq!(
        s.transcript(rest[0])["body"]["members"],
        serde_json::json!(names)
    );
    assert!(!s.out(4).exists());
}

/// DiLoCo rounds (`--inner-steps H`): an input that is not a pseudo-gradient
/// of H inner steps (or a pseudo-gradient in a plain round) is one clear line
/// and exit 2 before any connection, nothing written; a round of matching
/// pseudo-gradients records H in its output.
#[test]
fn pseudo_gradients_of_other_inner_steps_are_refused() {
    let _machine = beside_others();
    let s = Swarm::new(2, 3_000, &[1, 2]);
    for i in 0..2 {
        let path = s.path(&format!("p{i}.in"));
        let f = TensorFile::open(&path).unwrap();
        let (specs, values) = (f.specs(), f.flat_f32().unwrap().to_vec());
        let mut meta = f.metadata().clone();
        meta.insert("inner_steps".into(), "4".into());
        drop(f);
        dtrain::tensors::write_flat_f32(&path, &specs, &values, &meta).unwrap();
    }
    for (extra, says) in [
        (
            &[][..],
            "a pseudo-gradient of 4 inner steps, the round expects a plain gradient",
        ),
        (
            &["--inner-steps", "8"][..],
            "the round expects a pseudo-gradient of 8 inner steps",
        ),
    ] {
        let mut args = vec!["--deadline", "5"];
        args.extend_from_slice(extra);
        let (code, _, err) = finish(s.spawn(0, "h", &args), Duration::from_secs(10));
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains(says), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(!s.out(0).exists());
    }
    let res = run_all(&s, "h4", &["--inner-steps", "4"], 10.0);
    for r in &res {
        assert_eq!(r.0, Some(0), "{}", r.2);
    }
    s.same_output_everywhere("inner steps 4");
    let out = TensorFile::open(s.out(0)).unwrap();
    assert_eq!(out.meta("inner_steps").unwrap(), "4");
}
