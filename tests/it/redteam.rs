//! The red team: every way of cheating a validator we know must be caught by
//! `verify` or `score`, and honest work must pass every time. Real processes,
//! the bundled corpus (rows assigned by fetch-shard), the tiny model, CPU.
//! Prints a table of case → verdict.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::*;
use dtrain::receipt::Receipt;
use dtrain::tensors::{GradMeta, TensorFile};

pub(crate) const T: &str = "32";
const ROWS: &str = "24";

pub(crate) struct World {
    dir: tempfile::TempDir,
    corpus: PathBuf,
    pub model: PathBuf,
    /// DiLoCo flags train-step and verify both take (empty: plain gradients).
    pub inner: Vec<String>,
}

pub(crate) struct Miner {
    pub name: String,
    pub key: PathBuf,
    pub pubkey: String,
    pub spec: PathBuf,
    pub shard: PathBuf,
    pub grad: PathBuf,
    pub receipt: PathBuf,
    /// DiLoCo: the folder of its published states.
    pub states: PathBuf,
}

pub(crate) fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

impl World {
    pub fn new() -> World {
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
        World {
            dir,
            corpus,
            model,
            inner: Vec::new(),
        }
    }

    pub fn p(&self, f: &str) -> PathBuf {
        self.dir.path().join(f)
    }

    /// An honest miner: its assigned rows, tokenized, trained on, signed.
    pub fn miner(&self, name: &str, uid: u64, epoch: u64) -> Miner {
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
            states: self.p(&format!("{name}-{epoch}.states")),
        };
        self.work(&m, uid, epoch, &self.model, None);
        m
    }

    /// Honest miners `names` (uids 0, 1, …) for `epoch`, and their round's peers file.
    fn round(&self, names: &[&str], epoch: u64) -> Vec<Miner> {
        let peers: Vec<Miner> = names
            .iter()
            .enumerate()
            .map(|(i, n)| self.miner(n, i as u64, epoch))
            .collect();
        let toml: String = peers
            .iter()
            .map(|m| peer_entry(&m.name, &m.pubkey))
            .collect();
        std::fs::write(self.p("peers.toml"), toml).unwrap();
        peers
    }

    /// fetch → tokenize → train-step for `m`.
    pub fn work(&self, m: &Miner, uid: u64, epoch: u64, model: &Path, sequences: Option<&str>) {
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
    pub fn train(&self, m: &Miner, model: &Path, shard: &Path, sequences: Option<&str>) {
        self.train_with(m, model, shard, sequences, &self.inner)
    }

    /// train-step with `inner` as its DiLoCo flags (a cheater's own settings).
    pub fn train_with(
        &self,
        m: &Miner,
        model: &Path,
        shard: &Path,
        sequences: Option<&str>,
        inner: &[String],
    ) {
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
        if !inner.is_empty() {
            args.extend(inner.iter().map(String::as_str));
            args.extend_from_slice(&["--states", s(&m.states)]);
        }
        let o = dtrain(&args, b"");
        assert!(o.status.success(), "{}", stderr(&o));
    }

    /// verify as a validator would: pinned key, re-fetched rows.
    pub fn verify(&self, m: &Miner, model: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
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
        if !self.inner.is_empty() {
            args.extend(self.inner.iter().map(String::as_str));
            args.extend_from_slice(&["--states", s(&m.states)]);
        }
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

pub(crate) fn receipt(m: &Miner) -> Receipt {
    Receipt::from_json(&std::fs::read_to_string(&m.receipt).unwrap()).unwrap()
}

pub(crate) fn save_signed(m: &Miner, mut r: Receipt, key: &Path) {
    r.sign(&dtrain::keys::Key::load(key).unwrap());
    std::fs::write(&m.receipt, r.to_json()).unwrap();
}

/// Rewrites the gradient file's values (keeping its metadata), and points
/// the receipt at the new file, re-signed: what a cheater would do.
pub(crate) fn forge_grad(m: &Miner, f: impl Fn(usize, f32) -> f32) {
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
    dtrain::tensors::write_flat_f32(&m.grad, &specs, &flat, &meta).unwrap();
    let mut r = receipt(m);
    r.grad = dtrain::fsio::hash_file(&m.grad)
        .unwrap()
        .to_hex()
        .to_string();
    save_signed(m, r, &m.key);
}

pub(crate) fn failed_checks(v: &serde_json::Value) -> String {
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
    let _machine = beside_others();
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
    dtrain::tensors::write_flat_f32(&m.grad, &specs, &flat, &meta).unwrap();
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
    let peers = w.round(&["ra", "rb", "freerider", "garbler"], 5);
    let garbage = w.p("garbage.safetensors");
    {
        let g = TensorFile::open(&peers[3].grad).unwrap();
        let specs = g.specs();
        let meta = g.metadata().clone();
        let flat: Vec<f32> = (0..g.numel())
            .map(|i| ((i * 7919) % 101) as f32 * 1e-3)
            .collect();
        dtrain::tensors::write_flat_f32(&garbage, &specs, &flat, &meta).unwrap();
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
    let mut tr_args: Vec<String> = trs
        .iter()
        .flat_map(|t| ["--transcript".to_string(), s(t).to_string()])
        .collect();
    tr_args.extend(["--peers".to_string(), s(&w.p("peers.toml")).to_string()]);
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

/// Writes `m`'s gradient again with its tensors in reverse order (same names,
/// values and metadata), re-pointing and re-signing the receipt.
fn reorder_grad(m: &Miner) {
    let g = TensorFile::open(&m.grad).unwrap();
    let mut specs = g.specs();
    let meta = g.metadata().clone();
    let flat = g.flat_f32().unwrap().to_vec();
    drop(g);
    let mut parts = Vec::new();
    let mut o = 0;
    for sp in &specs {
        parts.push(&flat[o..o + sp.numel()]);
        o += sp.numel();
    }
    specs.reverse();
    parts.reverse();
    dtrain::tensors::write_f32(&m.grad, &specs, &parts, &meta).unwrap();
    let mut r = receipt(m);
    r.grad = dtrain::fsio::hash_file(&m.grad)
        .unwrap()
        .to_hex()
        .to_string();
    save_signed(m, r, &m.key);
}

/// Defects in what a miner publishes are FAIL verdicts (exit 1, a JSON
/// verdict naming the check), never an exit 2 or a panic; a spec is held to
/// the validator's own assignment; a receipt to its round and miner.
#[test]
fn hostile_artefacts_are_fail_verdicts() {
    let _machine = beside_others();
    let w = World::new();
    let mut table: Vec<(String, String)> = Vec::new();
    let mut caught = |case: &str, (code, v): (i32, serde_json::Value), check: &str| {
        assert_eq!(code, 1, "{case}: not caught: {v}");
        let failed = failed_checks(&v);
        assert!(
            failed.contains(check),
            "{case}: failed {failed}, expected {check}: {v}"
        );
        table.push((case.to_string(), format!("FAIL ({failed})")));
    };
    let assignment =
        |uid: &'static str| ["--seed", "0", "--epoch", "0", "--uid", uid, "--rows", ROWS];

    // rows of uid 4, the spec relabelled as uid 3's: the rows match the spec,
    // but not what the subnet assigns uid 3
    let m = w.miner("relabel", 4, 0);
    assert_eq!(
        w.verify(&m, &w.model, &assignment("4")).0,
        0,
        "honest uid 4 passes"
    );
    let mut spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&m.spec).unwrap()).unwrap();
    spec["assignment"]["uid"] = 3.into();
    std::fs::write(&m.spec, spec.to_string()).unwrap();
    caught(
        "spec relabelled to another uid's rows",
        w.verify(&m, &w.model, &assignment("3")),
        "shard",
    );

    // the gradient's tensors in another order
    let m = w.miner("reorder", 1, 0);
    reorder_grad(&m);
    caught(
        "gradient tensors re-ordered",
        w.verify(&m, &w.model, &[]),
        "gradient",
    );

    // a truncated gradient file
    let m = w.miner("trunc", 2, 0);
    let len = std::fs::metadata(&m.grad).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&m.grad)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    caught(
        "truncated gradient file",
        w.verify(&m, &w.model, &[]),
        "gradient file",
    );

    // a receipt that is not JSON
    let m = w.miner("garbled", 3, 0);
    std::fs::write(&m.receipt, b"{\"version\": 2, \"model\": ").unwrap();
    caught(
        "receipt is not JSON",
        w.verify(&m, &w.model, &[]),
        "receipt",
    );

    // last round's receipt, replayed
    let m = w.miner("replay", 5, 0);
    let mut r = receipt(&m);
    r.round = Some("epoch-0".into());
    save_signed(&m, r, &m.key);
    assert_eq!(w.verify(&m, &w.model, &["--round", "epoch-0"]).0, 0);
    caught(
        "receipt of another round replayed",
        w.verify(&m, &w.model, &["--round", "epoch-1"]),
        "receipt",
    );
    caught(
        "receipt naming another miner",
        w.verify(&m, &w.model, &["--miner", "someone-else"]),
        "receipt",
    );

    // seq_len 0: signed (sane-looking otherwise) and with a bad signature
    let m = w.miner("zero", 6, 0);
    let mut r = receipt(&m);
    r.seq_len = 0;
    std::fs::write(&m.receipt, r.to_json()).unwrap();
    caught(
        "seq_len 0, signature broken",
        w.verify(&m, &w.model, &[]),
        "signature",
    );
    save_signed(&m, r, &m.key);
    caught(
        "seq_len 0, re-signed",
        w.verify(&m, &w.model, &[]),
        "receipt",
    );

    println!("\n{:<40} verdict", "hostile artefact");
    for (c, v) in &table {
        println!("{c:<40} {v}");
    }
}

/// Transcripts are the miners' word: one not signed by the key the peers file
/// pins for its writer is ignored (by verify and score); an owner's record
/// that contradicts the contributor's own is a dispute, not a FAIL; a weight
/// announced in the round that is not the receipt's sequence count is a FAIL.
#[test]
fn transcripts_are_trusted_only_from_their_pinned_writers() {
    let _machine = beside_others();
    let w = World::new();
    let peers = w.round(&["ta", "tb", "inflator"], 7);
    let inflated = (receipt(&peers[2]).sequences.len() * 10).to_string();
    let kids: Vec<_> = peers
        .iter()
        .map(|m| {
            let mut c = Command::new(bin());
            c.args(["reduce", "--peers", s(&w.p("peers.toml")), "--me", &m.name])
                .args(["--key", s(&m.key), "--round", "tt", "--in", s(&m.grad)])
                .args(["--out", s(&w.p(&format!("{}.avg", m.name)))])
                .args(["--transcript", s(&w.p(&format!("{}.tr", m.name)))])
                .args(["--deadline", "30", "--chunk", "65536"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            if m.name == "inflator" {
                c.args(["--weight", &inflated]);
            }
            c.spawn().unwrap()
        })
        .collect();
    for k in kids {
        let o = k.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let tr = |n: &str| w.p(&format!("{n}.tr"));
    let read = |p: &Path| dtrain::reduce::transcript::Transcript::read(p).unwrap();
    let with = |ts: &[PathBuf]| {
        let mut a: Vec<String> = vec!["--peers".into(), s(&w.p("peers.toml")).into()];
        for t in ts {
            a.push("--transcript".into());
            a.push(s(t).into());
        }
        a
    };
    let honest: Vec<PathBuf> = peers.iter().map(|m| tr(&m.name)).collect();
    let verify = |m: &Miner, ts: &[PathBuf]| {
        let a = with(ts);
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        w.verify(m, &w.model, &refs)
    };
    assert_eq!(verify(&peers[0], &honest).0, 0);
    assert_eq!(verify(&peers[1], &honest).0, 0);
    // the inflator's contributions are its gradient, but it announced 10x its sequences
    let (code, v) = verify(&peers[2], &honest);
    assert_eq!(code, 1, "{v}");
    assert!(v.to_string().contains("announced weight"), "{v}");

    // ta's record of tb's contribution forged, signed by a random key
    let mut forged = read(&tr("ta"));
    for span in forged.body.spans.iter_mut() {
        for c in span.contributors.iter_mut().filter(|c| c.peer == "tb") {
            if c.blake3.is_some() {
                c.blake3 = Some("00".repeat(32));
            }
        }
    }
    let stranger = dtrain::keys::Key::generate();
    let by_stranger = w.p("forged-by-stranger.tr");
    std::fs::write(
        &by_stranger,
        dtrain::reduce::transcript::Transcript::sign(forged.body.clone(), &stranger).to_json(),
    )
    .unwrap();
    let ts = [by_stranger.clone(), tr("tb"), tr("inflator")];
    let (code, v) = verify(&peers[1], &ts);
    assert_eq!(
        code, 0,
        "a stranger's transcript made an honest miner FAIL: {v}"
    );
    assert!(
        v.to_string().contains("not signed by its writer's key"),
        "{v}"
    );
    // ... the same forgery signed by ta itself: ta's word against tb's, a dispute
    let ta_key = dtrain::keys::Key::load(&peers[0].key).unwrap();
    let by_ta = w.p("forged-by-ta.tr");
    std::fs::write(
        &by_ta,
        dtrain::reduce::transcript::Transcript::sign(forged.body, &ta_key).to_json(),
    )
    .unwrap();
    let (code, v) = verify(&peers[1], &[by_ta, tr("tb"), tr("inflator")]);
    assert_eq!(code, 0, "{v}");
    assert!(
        v["disputes"].as_array().is_some_and(|d| !d.is_empty()),
        "{v}"
    );

    // score: a transcript by a stranger that makes tb look faster moves nothing
    let mut verdicts = String::new();
    for m in &peers[..2] {
        verdicts += &(verify(m, &honest).1.to_string() + "\n");
    }
    std::fs::write(w.p("verdicts.jsonl"), verdicts).unwrap();
    let score = |ts: &[PathBuf]| {
        let mut a: Vec<String> = [
            "score",
            "--verdicts",
            s(&w.p("verdicts.jsonl")),
            "--epoch",
            "7",
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        a.extend(["--state-out".into(), s(&w.p("state.json")).into()]);
        a.extend(with(ts));
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        let o = dtrain(&refs, b"");
        assert!(o.status.success(), "{}", stderr(&o));
        (
            serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["weights"].clone(),
            stderr(&o),
        )
    };
    let (fair, _) = score(&honest);
    let mut boosted = read(&tr("ta"));
    for t in boosted.body.traffic.iter_mut().filter(|t| t.peer == "tb") {
        t.received *= 100;
    }
    let fake = w.p("boost.tr");
    std::fs::write(
        &fake,
        dtrain::reduce::transcript::Transcript::sign(boosted.body, &stranger).to_json(),
    )
    .unwrap();
    let (after, notes) = score(&[fake, tr("tb"), tr("inflator")]);
    let (without_ta, _) = score(&[tr("tb"), tr("inflator")]);
    assert_eq!(after, without_ta, "the stranger's transcript counted");
    assert!(notes.contains("ignoring"), "{notes}");
    println!(
        "weights: all honest transcripts {fair}; ta's replaced by a stranger's boosted copy {after} \
         (= without ta's, {without_ta})"
    );
}

/// Error feedback (`reduce --residual`): what a miner sends is its gradient
/// plus the residual it kept, so the validator checks contributions against
/// the residual the miner published before the round. Without it an honest
/// miner's contributions do not match (FAIL); an inflated residual (which
/// would let a miner send anything near its gradient) and one written by the
/// round itself (chosen after the fact) are FAILs of the residual check.
#[test]
fn a_published_residual_is_what_was_sent_and_is_bounded() {
    let _machine = beside_others();
    let w = World::new();
    let peers = w.round(&["ea", "eb", "ec"], 8);
    let res = |m: &Miner| w.p(&format!("{}.residual", m.name));
    let round = |id: &str| {
        let kids: Vec<_> = peers
            .iter()
            .map(|m| {
                Command::new(bin())
                    .args(["reduce", "--peers", s(&w.p("peers.toml")), "--me", &m.name])
                    .args(["--key", s(&m.key), "--round", id, "--in", s(&m.grad)])
                    .args(["--out", s(&w.p(&format!("{}.avg", m.name)))])
                    .args(["--transcript", s(&w.p(&format!("{}.tr", m.name)))])
                    .args(["--wire", "ternary", "--residual", s(&res(m))])
                    .args(["--deadline", "30", "--chunk", "65536"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for k in kids {
            let o = k.wait_with_output().unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
    };
    round("e1");
    // what each miner publishes before round e2: the residual it will send with
    let published = |m: &Miner| w.p(&format!("{}.residual.pub", m.name));
    for m in &peers {
        std::fs::copy(res(m), published(m)).unwrap();
        let mut r = receipt(m);
        r.round = Some("e2".into());
        save_signed(m, r, &m.key);
    }
    round("e2");
    let mut args: Vec<String> = vec!["--peers".into(), s(&w.p("peers.toml")).into()];
    for m in &peers {
        args.push("--transcript".into());
        args.push(s(&w.p(&format!("{}.tr", m.name))).into());
    }
    args.extend(["--round".into(), "e2".into()]);
    let verify = |m: &Miner, residual: Option<&Path>| {
        let mut a = args.clone();
        if let Some(r) = residual {
            a.extend(["--residual".to_string(), s(r).to_string()]);
        }
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        w.verify(m, &w.model, &refs)
    };
    let m = &peers[0];
    let (code, v) = verify(m, Some(&published(m)));
    assert_eq!(code, 0, "{v}");
    let (code, v) = verify(m, None);
    assert_eq!((code, failed_checks(&v).as_str()), (1, "reduce"), "{v}");
    // inflated: the same residual ×1000 (a miner's licence to send anything)
    let f = TensorFile::open(published(m)).unwrap();
    let (specs, meta) = (f.specs(), f.metadata().clone());
    let big: Vec<f32> = f.flat_f32().unwrap().iter().map(|x| x * 1e3).collect();
    drop(f);
    let inflated = w.p("inflated.residual");
    dtrain::tensors::write_flat_f32(&inflated, &specs, &big, &meta).unwrap();
    let (code, v) = verify(m, Some(&inflated));
    assert_eq!(code, 1, "{v}");
    assert!(failed_checks(&v).contains("residual"), "{v}");
    assert!(v.to_string().contains("exceeds the gradient"), "{v}");
    // the residual the round itself wrote: chosen after the fact
    let (code, v) = verify(m, Some(&res(m)));
    assert_eq!(code, 1, "{v}");
    assert!(v.to_string().contains("written by this round"), "{v}");
}
