//! The red team: every way of cheating a validator we know must be caught by
//! `verify` or `score`, and honest work must pass every time. Real processes,
//! the bundled corpus (rows assigned by fetch-shard), the tiny model, CPU.
//! Prints a table of case → verdict.
mod common;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use dtrain::receipt::Receipt;
use dtrain::tensors::{GradMeta, TensorFile};

const T: &str = "32";
const ROWS: &str = "24";

struct World {
    dir: tempfile::TempDir,
    corpus: PathBuf,
    model: PathBuf,
}

struct Miner {
    name: String,
    key: PathBuf,
    pubkey: String,
    spec: PathBuf,
    shard: PathBuf,
    grad: PathBuf,
    receipt: PathBuf,
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let corpus = dir.path().join("corpus");
        copy_tree(&fixture("hub"), &corpus);
        let model = dir.path().join("model");
        assert!(dtrain(
            &["init", "--arch", "tiny", "--seed", "7", "-o", s(&model)],
            b""
        )
        .status
        .success());
        World { dir, corpus, model }
    }

    fn p(&self, f: &str) -> PathBuf {
        self.dir.path().join(f)
    }

    /// An honest miner: its assigned rows, tokenized, trained on, signed.
    fn miner(&self, name: &str, uid: u64, epoch: u64) -> Miner {
        let key = self.p(&format!("{name}.key"));
        if !key.exists() {
            assert!(dtrain(&["keygen", "-o", s(&key)], b"").status.success());
        }
        let pubkey = dtrain::keys::Key::load(&key).unwrap().public().to_hex();
        let m = Miner {
            name: name.into(),
            key,
            pubkey,
            spec: self.p(&format!("{name}-{epoch}.spec")),
            shard: self.p(&format!("{name}-{epoch}.bin")),
            grad: self.p(&format!("{name}-{epoch}.safetensors")),
            receipt: self.p(&format!("{name}-{epoch}.json")),
        };
        self.work(&m, uid, epoch, &self.model, None);
        m
    }

    /// fetch → tokenize → train-step for `m`.
    fn work(&self, m: &Miner, uid: u64, epoch: u64, model: &Path, sequences: Option<&str>) {
        let (u, e) = (uid.to_string(), epoch.to_string());
        let o = dtrain(
            &[
                "fetch-shard",
                "--source",
                s(&self.corpus),
                "--uid",
                &u,
                "--epoch",
                &e,
                "--rows",
                ROWS,
                "--spec-out",
                s(&m.spec),
            ],
            b"",
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let t = dtrain(
            &["tokenize", "--format", "jsonl", "-o", s(&m.shard)],
            &o.stdout,
        );
        assert!(t.status.success(), "{}", stderr(&t));
        self.train(m, model, &m.shard, sequences);
    }

    /// train-step on `shard`, writing m's gradient and signed receipt.
    fn train(&self, m: &Miner, model: &Path, shard: &Path, sequences: Option<&str>) {
        let mut args = vec![
            "train-step",
            "--model",
            s(model),
            "--tokens",
            s(shard),
            "--seq-len",
            T,
            "--micro-batch",
            "2",
        ];
        args.extend_from_slice(&[
            "--device",
            "cpu",
            "--sketch-k",
            "16",
            "-o",
            s(&m.grad),
            "--receipt",
            s(&m.receipt),
        ]);
        args.extend_from_slice(&["--key", s(&m.key), "--miner", &m.name]);
        if let Some(q) = sequences {
            args.extend_from_slice(&["--sequences", q]);
        }
        let o = dtrain(&args, b"");
        assert!(o.status.success(), "{}", stderr(&o));
    }

    /// verify as a validator would: pinned key, re-fetched rows.
    fn verify(&self, m: &Miner, model: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
        let mut args = vec![
            "verify",
            "--receipt",
            s(&m.receipt),
            "--grad",
            s(&m.grad),
            "--model",
            s(model),
            "--tokens",
            s(&m.shard),
        ];
        args.extend_from_slice(&[
            "--pubkey",
            &m.pubkey,
            "--spec",
            s(&m.spec),
            "--source",
            s(&self.corpus),
            "--device",
            "cpu",
            "--json",
        ]);
        args.extend_from_slice(extra);
        let o = dtrain(&args, b"");
        let code = o.status.code().unwrap();
        assert!(
            code == 0 || code == 1,
            "verify could not run ({code}): {}",
            stderr(&o)
        );
        let v: serde_json::Value =
            serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", stderr(&o)));
        (code, v)
    }
}

fn receipt(m: &Miner) -> Receipt {
    Receipt::from_json(&std::fs::read_to_string(&m.receipt).unwrap()).unwrap()
}

fn save_signed(m: &Miner, mut r: Receipt, key: &Path) {
    r.sign(&dtrain::keys::Key::load(key).unwrap());
    std::fs::write(&m.receipt, r.to_json()).unwrap();
}

/// Rewrites the gradient file's values (keeping its metadata), and points
/// the receipt at the new file, re-signed: what a cheater would do.
fn forge_grad(m: &Miner, f: impl Fn(usize, f32) -> f32) {
    let g = TensorFile::open(&m.grad).unwrap();
    let specs = g.specs();
    let meta = g.metadata().clone();
    let flat: Vec<f32> = g
        .flat_f32()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, &x)| f(i, x))
        .collect();
    drop(g);
    let mut parts = Vec::new();
    let mut o = 0;
    for sp in &specs {
        parts.push(&flat[o..o + sp.numel()]);
        o += sp.numel();
    }
    dtrain::tensors::write_f32(&m.grad, &specs, &parts, &meta).unwrap();
    let mut r = receipt(m);
    r.grad = dtrain::fsio::hash_file(&m.grad)
        .unwrap()
        .to_hex()
        .to_string();
    save_signed(m, r, &m.key);
}

fn failed_checks(v: &serde_json::Value) -> String {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| !c["pass"].as_bool().unwrap())
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn every_cheat_is_caught_and_honest_work_always_passes() {
    let w = World::new();
    let mut table: Vec<(String, String)> = Vec::new();
    fn expect_caught(
        table: &mut Vec<(String, String)>,
        case: &str,
        (code, v): (i32, serde_json::Value),
    ) {
        assert_eq!(code, 1, "{case}: not caught: {v}");
        assert_eq!(v["pass"], false);
        table.push((case.into(), format!("FAIL ({})", failed_checks(&v))));
    }

    // honest, 20 times with fresh data (other uids and epochs: other rows)
    let mut honest_ok = 0;
    for i in 0..20u64 {
        let m = w.miner("honest", i % 7, i);
        let (code, v) = w.verify(&m, &w.model, &[]);
        assert_eq!(code, 0, "honest run {i} failed: {v}");
        honest_ok += 1;
    }
    table.push((
        "honest (20 runs, fresh rows)".into(),
        format!("PASS {honest_ok}/20"),
    ));
    // the sampled mode passes honest work too
    let m = w.miner("honest", 1, 99);
    assert_eq!(w.verify(&m, &w.model, &["--sample", "2"]).0, 0);

    // random gradient
    let m = w.miner("rand", 2, 0);
    forge_grad(&m, |i, _| {
        ((i * 2654435761usize) % 1000) as f32 * 1e-6 - 5e-4
    });
    expect_caught(&mut table, "random gradient", w.verify(&m, &w.model, &[]));

    // honest gradient scaled ×1.01 and ×2 (receipt re-pointed and re-signed)
    for (label, k) in [
        ("honest gradient x1.01", 1.01f32),
        ("honest gradient x2", 2.0),
    ] {
        let m = w.miner("scaled", 3, 0);
        forge_grad(&m, |_, x| x * k);
        expect_caught(&mut table, label, w.verify(&m, &w.model, &[]));
    }
    // ... and with the sketches scaled too, so they stay linear
    let m = w.miner("scaled2", 3, 0);
    forge_grad(&m, |_, x| x * 1.01);
    let mut r = receipt(&m);
    r.micro_batches
        .iter_mut()
        .for_each(|mb| mb.sketch.iter_mut().for_each(|v| *v *= 1.01));
    save_signed(&m, r, &m.key);
    expect_caught(
        &mut table,
        "x1.01 with scaled sketches",
        w.verify(&m, &w.model, &[]),
    );

    // computed on a stale model
    let old = w.p("old-model");
    assert!(dtrain(
        &["init", "--arch", "tiny", "--seed", "8", "-o", s(&old)],
        b""
    )
    .status
    .success());
    let m = Miner {
        name: "stale".into(),
        ..w.miner("stale", 4, 0)
    };
    w.work(&m, 4, 0, &old, None);
    expect_caught(
        &mut table,
        "gradient on a stale model",
        w.verify(&m, &w.model, &[]),
    );

    // another miner's gradient, copied and re-signed
    let victim = w.miner("victim", 5, 0);
    let thief = w.miner("thief", 6, 0);
    std::fs::copy(&victim.grad, &thief.grad).unwrap();
    std::fs::copy(&victim.shard, &thief.shard).unwrap();
    let mut r = receipt(&victim);
    r.miner = Some("thief".into());
    save_signed(&thief, r, &thief.key);
    expect_caught(
        &mut table,
        "another miner's gradient, re-signed",
        w.verify(&thief, &w.model, &[]),
    );
    // ... claiming its own shard instead
    let thief2 = w.miner("thief2", 6, 0);
    std::fs::copy(&victim.grad, &thief2.grad).unwrap();
    let mut r = receipt(&victim);
    r.miner = Some("thief2".into());
    r.shard = receipt(&thief2).shard;
    save_signed(&thief2, r, &thief2.key);
    expect_caught(
        &mut table,
        "copied gradient, own shard claimed",
        w.verify(&thief2, &w.model, &[]),
    );

    // sequences reused from another miner's assignment: trained on the other's
    // rows, submitted with that shard; checked against its own assignment
    let m = w.miner("reuse", 0, 0);
    let other = w.miner("other", 1, 0);
    w.train(&m, &w.model, &other.shard, None);
    std::fs::copy(&other.shard, &m.shard).unwrap();
    expect_caught(
        &mut table,
        "sequences from another miner's rows",
        w.verify(&m, &w.model, &[]),
    );

    // half the micro-batches skipped, the missing sketches invented to stay linear
    let m = w.miner("lazy", 2, 1);
    let full = receipt(&m);
    let n = full.micro_batches.len();
    let half_seqs = full.micro_batches[..n / 2]
        .iter()
        .map(|mb| mb.sequences.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let lazy_receipt = w.p("lazy-half.json");
    let lazy_grad = w.p("lazy-half.safetensors");
    let o = dtrain(
        &[
            "train-step",
            "--model",
            s(&w.model),
            "--tokens",
            s(&m.shard),
            "--seq-len",
            T,
            "--micro-batch",
            "2",
            "--device",
            "cpu",
            "--sketch-k",
            "16",
            "--sequences",
            &half_seqs,
            "-o",
            s(&lazy_grad),
            "--receipt",
            s(&lazy_receipt),
        ],
        b"",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let half = Receipt::from_json(&std::fs::read_to_string(&lazy_receipt).unwrap()).unwrap();
    let mut forged = full.clone();
    for (i, mb) in forged.micro_batches.iter_mut().enumerate() {
        let src = &half.micro_batches[i % half.micro_batches.len()];
        mb.loss = src.loss;
        mb.sketch = src.sketch.clone();
    }
    // the half gradient, relabelled as all the sequences
    let g = TensorFile::open(&lazy_grad).unwrap();
    let mut meta = g.metadata().clone();
    GradMeta {
        model: full.model.clone(),
        sequences: full.sequences.len(),
        tokens: full.tokens,
    }
    .insert_into(&mut meta);
    let specs = g.specs();
    let flat = g.flat_f32().unwrap().to_vec();
    drop(g);
    let mut parts = Vec::new();
    let mut o = 0;
    for sp in &specs {
        parts.push(&flat[o..o + sp.numel()]);
        o += sp.numel();
    }
    dtrain::tensors::write_f32(&m.grad, &specs, &parts, &meta).unwrap();
    forged.grad = dtrain::fsio::hash_file(&m.grad)
        .unwrap()
        .to_hex()
        .to_string();
    save_signed(&m, forged, &m.key);
    expect_caught(
        &mut table,
        "half the micro-batches skipped",
        w.verify(&m, &w.model, &[]),
    );

    // an edited loss: without re-signing, and re-signed
    let m = w.miner("liar", 3, 1);
    let mut r = receipt(&m);
    r.micro_batches[0].loss *= 0.9;
    std::fs::write(&m.receipt, r.to_json()).unwrap();
    expect_caught(
        &mut table,
        "edited loss, not re-signed",
        w.verify(&m, &w.model, &[]),
    );
    save_signed(&m, r, &m.key);
    expect_caught(
        &mut table,
        "edited loss, re-signed",
        w.verify(&m, &w.model, &[]),
    );

    // a tampered signature
    let m = w.miner("forger", 4, 1);
    let mut r = receipt(&m);
    let mut sig = hex::decode(r.signature.clone().unwrap()).unwrap();
    sig[3] ^= 1;
    r.signature = Some(hex::encode(sig));
    std::fs::write(&m.receipt, r.to_json()).unwrap();
    expect_caught(
        &mut table,
        "tampered signature",
        w.verify(&m, &w.model, &[]),
    );

    // reduce: a free-rider (weight 0: receives, sends nothing) and a peer that
    // sends garbage instead of its gradient, among two honest miners
    let peers: Vec<Miner> = ["ra", "rb", "freerider", "garbler"]
        .iter()
        .enumerate()
        .map(|(i, n)| w.miner(n, i as u64, 5))
        .collect();
    let mut toml = String::new();
    for m in &peers {
        toml += &peer_entry(&m.name, &m.pubkey);
    }
    std::fs::write(w.p("peers.toml"), toml).unwrap();
    let garbage = w.p("garbage.safetensors");
    {
        let g = TensorFile::open(&peers[3].grad).unwrap();
        let specs = g.specs();
        let meta = g.metadata().clone();
        let flat: Vec<f32> = (0..g.numel())
            .map(|i| ((i * 7919) % 101) as f32 * 1e-3)
            .collect();
        let mut parts = Vec::new();
        let mut o = 0;
        for sp in &specs {
            parts.push(&flat[o..o + sp.numel()]);
            o += sp.numel();
        }
        dtrain::tensors::write_f32(&garbage, &specs, &parts, &meta).unwrap();
    }
    let kids: Vec<_> = peers
        .iter()
        .map(|m| {
            let input = if m.name == "garbler" {
                garbage.clone()
            } else {
                m.grad.clone()
            };
            let mut c = Command::new(bin());
            c.args([
                "reduce",
                "--peers",
                s(&w.p("peers.toml")),
                "--me",
                &m.name,
                "--key",
                s(&m.key),
                "--round",
                "rt",
            ])
            .args([
                "--in",
                s(&input),
                "--out",
                s(&w.p(&format!("{}.avg", m.name))),
                "--transcript",
                s(&w.p(&format!("{}.tr", m.name))),
            ])
            .args(["--deadline", "30", "--chunk", "65536"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
            if m.name == "freerider" {
                c.args(["--weight", "0"]);
            }
            c.spawn().unwrap()
        })
        .collect();
    for k in kids {
        let o = k.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let trs: Vec<PathBuf> = peers
        .iter()
        .map(|m| w.p(&format!("{}.tr", m.name)))
        .collect();
    let tr_args: Vec<String> = trs
        .iter()
        .flat_map(|t| ["--transcript".to_string(), s(t).to_string()])
        .collect();
    let tr_refs: Vec<&str> = tr_args.iter().map(String::as_str).collect();
    let mut verdicts = String::new();
    for m in &peers {
        let (code, v) = w.verify(m, &w.model, &tr_refs);
        if m.name == "garbler" {
            assert_eq!(code, 1, "garbage in reduce not caught: {v}");
            table.push((
                "garbage sent in reduce".into(),
                format!("FAIL ({})", failed_checks(&v)),
            ));
        } else if m.name != "freerider" {
            assert_eq!(code, 0, "{}: {v}", m.name);
        }
        verdicts += &(v.to_string() + "\n");
    }
    std::fs::write(w.p("verdicts.jsonl"), verdicts).unwrap();
    let mut args = vec![
        "score".to_string(),
        "--verdicts".into(),
        s(&w.p("verdicts.jsonl")).into(),
        "--state-out".into(),
        s(&w.p("state.json")).into(),
        "--epoch".into(),
        "5".into(),
    ];
    args.extend(tr_args.iter().cloned());
    for m in &peers {
        args.push("--receipt".into());
        args.push(s(&m.receipt).into());
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = dtrain(&refs, b"");
    assert!(o.status.success(), "{}", stderr(&o));
    let scores: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let f = &scores["miners"];
    assert_eq!(f["freerider"]["bandwidth"], 0.0, "{scores}");
    assert_eq!(f["freerider"]["contributed_all"], false);
    assert!(f["freerider"]["raw"].as_f64().unwrap() < f["ra"]["raw"].as_f64().unwrap());
    assert_eq!(f["garbler"]["raw"], 0.0);
    assert!(f["ra"]["bandwidth"].as_f64().unwrap() > 0.0 && f["rb"]["raw"].as_f64().unwrap() > 0.0);
    table.push((
        "reduce free-rider (weight 0)".into(),
        format!(
            "bandwidth score 0, raw {:.3} vs honest {:.3}",
            f["freerider"]["raw"].as_f64().unwrap(),
            f["ra"]["raw"].as_f64().unwrap()
        ),
    ));
    table.push(("garbage sender's score".into(), "0".into()));

    println!("\n{:<40} verdict / score", "red-team case");
    for (c, v) in &table {
        println!("{c:<40} {v}");
    }
}
