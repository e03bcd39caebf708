//! The whole subnet end to end on this machine: `scripts/swarm.sh` (a local
//! hub, miners and a validator as separate processes talking over loopback),
//! a cheater, a miner killed mid-reduce that comes back, and the claim that
//! distributed training equals centralized training.
//!
//! The swarm tests run the real shell loops, so they also catch a script that
//! drifts from the commands' flags.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::Value;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn swarm_cmd(work: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(root().join("scripts/swarm.sh"));
    c.args(["--work", s(work)]).args(args).current_dir(root());
    // the swarm must not inherit settings from whoever runs the tests
    for (k, _) in std::env::vars() {
        if k.starts_with("DTRAIN_") {
            c.env_remove(k);
        }
    }
    // the test run is set up already; a nested cargo build would rebuild the
    // binary under the other tests' feet
    c.env("DTRAIN_SKIP_SETUP", "1");
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn swarm(work: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let o = swarm_cmd(work, args, env)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    if !o.status.success() {
        dump_logs(work);
    }
    o
}

/// A swarm run that must succeed with `n` epochs: its printed table and epochs.
fn swarm_ok(work: &Path, args: &[&str], env: &[(&str, &str)], n: usize) -> (String, Vec<Value>) {
    let o = swarm(work, args, env);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    let eps = epochs(work);
    assert_eq!(eps.len(), n, "{out}");
    (out, eps)
}

/// The cheating miner's hook (tests/e2e/cheat.py) with extra arguments.
fn cheat_hook(extra: &str) -> String {
    format!(
        "{} {} {extra}",
        root().join(".venv/bin/python").display(),
        root().join("tests/e2e/cheat.py").display()
    )
}

fn dump_logs(work: &Path) {
    for e in std::fs::read_dir(work).into_iter().flatten().flatten() {
        if e.path().extension().is_some_and(|x| x == "log") {
            let t = std::fs::read_to_string(e.path()).unwrap_or_default();
            let tail: Vec<&str> = t.lines().rev().take(25).collect();
            eprintln!("== {} (tail)", e.path().display());
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

fn jsonl(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn epochs(work: &Path) -> Vec<Value> {
    jsonl(&work.join("validator/epochs.jsonl"))
}

fn hash(path: &Path) -> String {
    let o = dtrain(&["hash", s(path)], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    String::from_utf8(o.stdout).unwrap()[..64].to_string()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

/// The model tagged `tag` in the swarm's model repo, pulled over HTTP from a
/// hub restarted on the swarm's hub folder.
fn pushed_models(work: &Path, tags: &[usize]) -> Vec<String> {
    let hub = Hub::start(&work.join("hub"), &[]);
    let home = work.join("test-hf-home");
    tags.iter()
        .map(|t| {
            let out = work.join(format!("pulled-{t}"));
            let o = dtrain_env(
                &[
                    "pull",
                    "--repo",
                    "swarm/model",
                    "--tag",
                    &t.to_string(),
                    "-o",
                    s(&out),
                ],
                &[("HF_ENDPOINT", &hub.url), ("HF_HOME", s(&home))],
            );
            assert!(o.status.success(), "pull tag {t}: {}", stderr(&o));
            hash(&out)
        })
        .collect()
}

/// The commit message of the model repo's tag, read from the hub's store.
fn tag_message(work: &Path, tag: usize) -> String {
    let meta = work.join("hub/.dtrain-hub/repos/models/swarm/model");
    let refs: Value =
        serde_json::from_slice(&std::fs::read(meta.join("refs.json")).unwrap()).unwrap();
    let commit = refs["tags"][tag.to_string()].as_str().unwrap().to_string();
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(meta.join(format!("commits/{commit}.json"))).unwrap(),
    )
    .unwrap();
    manifest["message"].as_str().unwrap_or_default().to_string()
}

/// After every epoch e: each miner in `applied_by[e]` applied the model the
/// validator applied, which is the ledger's entry e and the hub's tag e+1.
fn check_agreement(work: &Path, eps: &[Value], applied_by: &[Vec<usize>]) {
    let ledger = dtrain::ledger::read(&work.join("validator/ledger.jsonl"), None).unwrap();
    assert_eq!(ledger.len(), eps.len(), "one ledger entry per epoch");
    let tags: Vec<usize> = (1..=eps.len()).collect();
    let pushed = pushed_models(work, &tags);
    for (e, ep) in eps.iter().enumerate() {
        let model = ep["model"].as_str().unwrap();
        assert_eq!(ep["epoch"], e, "{ep}");
        assert_eq!(ledger[e].epoch, e as u64);
        assert_eq!(ledger[e].model, model, "ledger entry {e}");
        assert_eq!(pushed[e], model, "hub tag {}", e + 1);
        let message = tag_message(work, e + 1);
        assert!(
            message.contains(&format!("Ledger {}.", ledger[e].hash())),
            "tag {} does not carry the ledger's head: {message}",
            e + 1
        );
        for &m in &applied_by[e] {
            let applied = read(&work.join(format!("miner-{m}/applied-{e}")));
            assert_eq!(applied, model, "miner-{m} after epoch {e}");
        }
    }
}

fn losses(eps: &[Value]) -> Vec<f64> {
    eps.iter().map(|e| e["loss"].as_f64().unwrap()).collect()
}

fn assert_decreasing(l: &[f64]) {
    assert!(
        l.windows(2).all(|w| w[1] < w[0]),
        "the loss must fall every epoch: {l:?}"
    );
}

#[test]
fn three_epochs_everyone_ends_with_the_same_model() {
    let _one = alone();
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("swarm");
    let o = swarm(&work, &["--epochs", "3"], &[]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    eprintln!("{out}");
    // the table: a header, one line per epoch, the summary, the plot
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 6, "{out}");
    assert!(lines[4].starts_with("summary: 3 epochs"), "{out}");
    assert!(lines[5].starts_with("loss curve: "), "{out}");
    let png = image::open(work.join("loss.png")).unwrap().to_rgb8();
    assert_eq!(png.dimensions(), (800, 500));
    assert!(png.pixels().filter(|p| p.0 != [255, 255, 255]).count() > 5000);
    let eps = epochs(&work);
    assert_eq!(eps.len(), 3);
    assert_decreasing(&losses(&eps));
    check_agreement(&work, &eps, &vec![vec![0, 1, 2]; 3]);
    for ep in &eps {
        assert_eq!(ep["members"].as_array().unwrap().len(), 4, "{ep}");
        assert!(ep["rejected"].as_array().unwrap().is_empty(), "{ep}");
        for m in 0..3 {
            let score = ep["scores"][format!("miner-{m}")].as_f64().unwrap();
            assert!(score > 0.0, "miner-{m} scored {score} in {ep}");
        }
    }
    // what the validator signed is what the swarm printed
    let ledger = dtrain::ledger::read(&work.join("validator/ledger.jsonl"), None).unwrap();
    assert_eq!(
        ledger[2].contributors,
        ["miner-0", "miner-1", "miner-2", "validator"]
    );
    assert!(lines[3].contains(&ledger[2].model[..10]), "{out}");
    // each entry records the verified miners' loss, the validator's eval loss
    // on held-out rows, and its tag; the ledger is published beside the model
    for (e, entry) in ledger.iter().enumerate() {
        let (loss, eval) = (entry.loss.unwrap(), entry.eval_loss.unwrap());
        assert!(
            loss.is_finite() && eval.is_finite() && eval > 0.0,
            "{entry:?}"
        );
        assert_eq!(entry.tag.as_deref(), Some((e + 1).to_string().as_str()));
    }
    assert!(ledger[2].eval_loss < ledger[0].eval_loss, "{ledger:?}");
    let published = std::fs::read(work.join("pulled-3/ledger.jsonl")).unwrap();
    assert_eq!(
        published,
        std::fs::read(work.join("validator/ledger.jsonl")).unwrap()
    );
    verify_published_ledger(&work, &ledger);
    check_status(&work, &ledger);
}

/// `dtrain status` on the validator's and a miner's folders says what the
/// swarm did, the lag against the hub's newest tag (4, pushed by
/// `verify_published_ledger`) included; the metrics files the loops wrote parse
/// as Prometheus text (prometheus_client's own parser) and say the same.
fn check_status(work: &Path, ledger: &[dtrain::ledger::Entry]) {
    let head = &ledger[2];
    let hub = Hub::start(&work.join("hub"), &[]);
    let env = [
        ("HF_ENDPOINT", hub.url.as_str()),
        ("HF_HOME", "/nonexistent"),
    ];
    let status = |node: &str| -> Value {
        let dir = work.join(node);
        let o = dtrain_env(
            &["status", s(&dir), "--repo", "swarm/model", "--json"],
            &env,
        );
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let v = status("validator");
    assert_eq!(
        (v["role"].as_str(), v["epoch"].as_u64()),
        (Some("validator"), Some(2)),
        "{v}"
    );
    assert_eq!(v["model"], head.model.as_str(), "{v}");
    assert_eq!(v["eval_loss"].as_f64(), head.eval_loss, "{v}");
    assert_eq!(v["tokens"].as_u64(), Some(head.tokens), "{v}");
    assert_eq!(v["ledger"]["entries"], 3, "{v}");
    assert_eq!(v["ledger"]["hash"], head.hash().as_str(), "{v}");
    assert_eq!(v["passed"].as_array().unwrap().len(), 3, "{v}");
    assert_eq!(
        (v["lag"]["newest_tag"].as_u64(), v["lag"]["epochs"].as_u64()),
        (Some(4), Some(1)),
        "{v}"
    );
    let m = status("miner-0");
    assert_eq!(
        (m["role"].as_str(), m["epoch"].as_u64()),
        (Some("miner"), Some(2)),
        "{m}"
    );
    assert_eq!(m["updated"], true, "{m}");
    assert_eq!(m["model"], head.model.as_str(), "{m}");
    assert_eq!(m["reduce"]["members"].as_array().unwrap().len(), 4, "{m}");
    // the loops' textfile metrics, read by the Prometheus client library
    let samples = prometheus_samples(&work.join("validator/metrics.prom"));
    let at = |name: &str, labels: &str| samples[&format!("{name}{{{labels}}}")];
    assert_eq!(at("dtrain_epoch", "role=validator"), 2.0);
    assert_eq!(
        at("dtrain_eval_loss", "role=validator"),
        head.eval_loss.unwrap()
    );
    assert_eq!(at("dtrain_verdicts", "role=validator,verdict=pass"), 3.0);
    assert_eq!(at("dtrain_ledger_entries", "role=validator"), 3.0);
    let score: f64 = (0..3)
        .map(|i| at("dtrain_score", &format!("miner=miner-{i},role=validator")))
        .sum();
    assert!((score - 1.0).abs() < 1e-9, "{samples:?}");
    let samples = prometheus_samples(&work.join("miner-1/metrics.prom"));
    assert_eq!(samples["dtrain_epoch{role=miner}"], 2.0);
    assert!(
        samples["dtrain_reduce_bytes{role=miner}"] > 0.0,
        "{samples:?}"
    );
}

/// "name{k=v,…}" → value, as prometheus_client's parser reads the file.
fn prometheus_samples(path: &Path) -> std::collections::BTreeMap<String, f64> {
    let venv = root().join(".venv/bin/python");
    let python = if venv.exists() {
        venv
    } else {
        "python3".into()
    };
    let script = r#"
import sys, json
from prometheus_client.parser import text_string_to_metric_families as parse
out = {}
for fam in parse(open(sys.argv[1]).read()):
    for s in fam.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        out[s.name + "{" + labels + "}"] = s.value
print(json.dumps(out))
"#;
    let o = Command::new(python)
        .args(["-c", script, s(path)])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// `ledger verify --hub` checks the run from the Hub alone; a newest tag whose
/// ledger was truncated (or whose model is not the last entry's) fails.
fn verify_published_ledger(work: &Path, ledger: &[dtrain::ledger::Entry]) {
    let hub = Hub::start(&work.join("hub"), &[]);
    let home = work.join("verify-hf-home");
    let env = [("HF_ENDPOINT", hub.url.as_str()), ("HF_HOME", s(&home))];
    let pubkey = &ledger[0].validator;
    let verify = || {
        dtrain_env(
            &[
                "ledger",
                "verify",
                "--hub",
                "swarm/model",
                "--pubkey",
                pubkey,
            ],
            &env,
        )
    };
    let o = verify();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("ok: 3 entries"));
    // a newest tag with the history cut after epoch 1 (but the epoch-2 model)
    let forged = work.join("forged");
    copy_tree(&work.join("pulled-3"), &forged);
    let text = std::fs::read_to_string(forged.join("ledger.jsonl")).unwrap();
    let cut: String = text.lines().take(2).map(|l| format!("{l}\n")).collect();
    std::fs::write(forged.join("ledger.jsonl"), cut).unwrap();
    let o = dtrain_env(
        &["push", s(&forged), "--repo", "swarm/model", "--tag", "4"],
        &env,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = verify();
    assert_fails(&o, 1, "truncated or rewritten history");
}

/// The gradient averaged over `members`' published gradients at `epoch`,
/// weighted by their sequences, as the validator saw them.
fn honest_average(vdir: &Path, members: &[&str]) -> (Vec<f64>, Vec<Vec<f32>>) {
    let mut acc: Vec<f64> = Vec::new();
    let mut all = Vec::new();
    let mut sw = 0f64;
    for m in members {
        let f = dtrain::tensors::TensorFile::open(vdir.join(format!("m/{m}/grad.safetensors")))
            .unwrap();
        let w = f.meta_u64("sequences").unwrap() as f64;
        let g = f.flat_f32().unwrap().to_vec();
        if acc.is_empty() {
            acc = vec![0.0; g.len()];
        }
        acc.iter_mut()
            .zip(&g)
            .for_each(|(a, &x)| *a += w * x as f64);
        sw += w;
        all.push(g);
    }
    acc.iter_mut().for_each(|a| *a /= sw);
    (acc, all)
}

fn rel_dist(a: &[f32], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(&x, &y)| (x as f64 - y).powi(2)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    (num / den).sqrt()
}

/// The first miner in the list never publishes (its hook fails before the
/// push). The validator used to wait for it for the whole window and then had
/// no time left for the others: the epoch was lost for everyone. Now it polls
/// every miner at once and closes the round at the window's end; the others'
/// epochs complete, with exactly the members that published.
#[test]
fn a_miner_that_never_publishes_costs_only_itself() {
    let _one = alone();
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("swarm");
    let t0 = std::time::Instant::now();
    let (out, eps) = swarm_ok(
        &work,
        &["--epochs", "2", "--cheat-hook", "false", "--cheater", "0"],
        &[("DTRAIN_WAIT", "40")],
        2,
    );
    for ep in &eps {
        assert!(ep["no_update"].is_null(), "an epoch was lost: {ep}");
        assert_eq!(
            ep["members"],
            serde_json::json!(["miner-1", "miner-2", "validator"]),
            "{ep}"
        );
    }
    // each epoch: one 40 s window, the round and the verification
    let took = t0.elapsed().as_secs();
    eprintln!("2 epochs with an absent miner: {took} s\n{out}");
    assert!(took < 2 * (40 + 45), "{took} s");
}

/// Fault drills through `swarm.sh`: miner-0 is killed before epoch 1 and
/// restarted at epoch 2; the validator is killed in the middle of epoch 2
/// (after publishing the members) and restarted at once. Epoch 1 completes
/// without miner-0; epoch 2 ends without an update (the round went on without
/// the validator and cannot be rejoined) and is recorded as such, never twice;
/// epoch 3 resumes with everyone. The ledger has one entry per updated epoch,
/// chained, and every member applied the round's model.
#[test]
fn drills_kill_and_restart_a_miner_and_the_validator_without_a_fork() {
    let _one = alone();
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("swarm");
    let args = [
        "--epochs",
        "4",
        "--kill",
        "miner-0@1",
        "--restart",
        "miner-0@2",
        "--restart",
        "validator@2",
    ];
    let (out, eps) = swarm_ok(&work, &args, &[("DTRAIN_WAIT", "40")], 4);
    eprintln!("{out}");
    let members = |e: usize| eps[e]["members"].clone();
    let all = serde_json::json!(["miner-0", "miner-1", "miner-2", "validator"]);
    assert_eq!(members(0), all);
    assert_eq!(
        members(1),
        serde_json::json!(["miner-1", "miner-2", "validator"])
    );
    assert_eq!(eps[2]["no_update"], true, "{}", eps[2]);
    assert!(
        eps[2]["why"]
            .as_str()
            .unwrap()
            .contains("restarted mid-epoch"),
        "{}",
        eps[2]
    );
    assert_eq!(members(3), all, "everyone resumes after the restart");
    // one ledger entry per updated epoch, chained and signed; tags agree
    let ledger = dtrain::ledger::read(&work.join("validator/ledger.jsonl"), None).unwrap();
    let recorded: Vec<u64> = ledger.iter().map(|e| e.epoch).collect();
    assert_eq!(recorded, [0, 1, 3]);
    let pushed = pushed_models(&work, &[1, 2, 3, 4]);
    assert_eq!(pushed[2], pushed[1], "epoch 2 tags the unchanged model");
    for (entry, e) in ledger.iter().zip([0usize, 1, 3]) {
        assert_eq!(entry.model, eps[e]["model"].as_str().unwrap());
        assert_eq!(pushed[e], entry.model, "hub tag {}", e + 1);
    }
    for (e, who) in [(0, vec![0, 1, 2]), (1, vec![1, 2]), (3, vec![0, 1, 2])] {
        for m in who {
            let applied = read(&work.join(format!("miner-{m}/applied-{e}")));
            assert_eq!(
                applied,
                eps[e]["model"].as_str().unwrap(),
                "miner-{m} after {e}"
            );
        }
    }
    assert!(!work.join("miner-0/applied-1").exists(), "miner-0 was down");
    assert!(out.contains("members: miner-1,miner-2"), "{out}");
}

/// A drill that names no process or no epoch of the run is refused with one
/// line and exit 2, before anything starts (the work folder is left alone).
#[test]
fn a_bad_drill_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("swarm");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("keep"), b"x").unwrap();
    for (args, why) in [
        (["--kill", "miner-7@1"], "no process miner-7"),
        (["--kill", "miner-1@9"], "EPOCH below 5"),
        (["--kill", "miner-1"], "want NAME@EPOCH"),
        (
            ["--kill", "validator@1"],
            "restart it (--restart validator@E)",
        ),
    ] {
        let o = swarm_cmd(&work, &args, &[]).output().unwrap();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("swarm.sh: ") && err.contains(why), "{err}");
    }
    assert!(work.join("keep").exists());
}

/// With one row each and 32-token sequences, two of the three miners' shards
/// hold no whole sequence in epoch 0 (17 and 8 tokens): their train-step used
/// to fail, and the epoch with it. Now miner and validator double the rows by
/// the same rule until a sequence fits; every miner takes part and passes.
#[test]
fn a_miner_with_too_little_data_still_takes_part() {
    let _one = alone();
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("swarm");
    let (_, eps) = swarm_ok(
        &work,
        &["--epochs", "2", "--rows", "1"],
        &[("DTRAIN_SEQ_LEN", "32"), ("DTRAIN_MICRO_BATCH", "1")],
        2,
    );
    for ep in &eps {
        assert!(ep["no_update"].is_null(), "an epoch was lost: {ep}");
        assert_eq!(ep["rejected"], serde_json::json!([]), "{ep}");
        assert_eq!(ep["members"].as_array().unwrap().len(), 4, "{ep}");
    }
    let log = std::fs::read_to_string(work.join("miner-1.log")).unwrap();
    assert!(log.contains("hold no whole sequence; took"), "{log}");
}

/// The first miner publishes a NaN gradient. The validator used to take the
/// round's layout from the first miner's file, so its reduce refused NaN and
/// every epoch was lost with nobody penalised; now it uses its own checkpoint:
/// the epochs complete, the NaN miner is rejected and scores 0.
#[test]
fn a_nan_gradient_from_the_first_miner_costs_only_that_miner() {
    let _one = alone();
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("swarm");
    let hook = cheat_hook("--nan");
    let args = ["--epochs", "2", "--cheat-hook", &hook, "--cheater", "0"];
    let (_, eps) = swarm_ok(&work, &args, &[], 2);
    for ep in &eps {
        assert!(ep["no_update"].is_null(), "an epoch was lost: {ep}");
        assert_eq!(ep["rejected"], serde_json::json!(["miner-0"]), "{ep}");
        assert_eq!(ep["scores"]["miner-0"].as_f64(), Some(0.0), "{ep}");
        assert!(ep["loss"].as_f64().unwrap().is_finite(), "{ep}");
    }
}

#[test]
fn a_cheater_is_rejected_scores_zero_and_clipping_keeps_the_average() {
    let _one = alone();
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("swarm");
    let hook = cheat_hook("");
    let args = ["--epochs", "3", "--cheat-hook", &hook];
    let (out, eps) = swarm_ok(&work, &args, &[("DTRAIN_CLIP", "centered:2e-4")], 3);
    eprintln!("{out}");
    for ep in &eps {
        assert_eq!(ep["rejected"], serde_json::json!(["miner-2"]), "{ep}");
        assert_eq!(ep["scores"]["miner-2"].as_f64(), Some(0.0), "{ep}");
        for m in 0..2 {
            assert!(ep["scores"][format!("miner-{m}")].as_f64().unwrap() > 0.0);
        }
    }
    let w: Value = serde_json::from_str(&read(&work.join("validator/weights.json"))).unwrap();
    assert_eq!(w["weights"]["miner-2"].as_f64(), Some(0.0), "{w}");
    // the honest miners' loss still falls (their rows differ each epoch, so
    // it is their mean that is compared; the cheater's loss is honest too)
    assert_decreasing(&losses(&eps));
    // the averaged gradient of the last epoch the validator kept, against the
    // honest miners' own average: clipping keeps it close, a plain mean would
    // be dominated by the cheater's noise
    let v = work.join("validator/epoch-2");
    let (honest, all) = honest_average(&v, &["miner-0", "miner-1"]);
    let (plain, _) = honest_average(&v, &["miner-0", "miner-1", "miner-2"]);
    let f = dtrain::tensors::TensorFile::open(v.join("avg.safetensors")).unwrap();
    let clipped = rel_dist(f.flat_f32().unwrap(), &honest);
    let plain32: Vec<f32> = plain.iter().map(|&x| x as f32).collect();
    let unclipped = rel_dist(&plain32, &honest);
    let one_honest = rel_dist(&all[0], &honest);
    eprintln!(
        "distance to the honest average: clipped {clipped:.3}, plain mean {unclipped:.3}, one honest miner {one_honest:.3}"
    );
    assert!(
        unclipped > 5.0,
        "the cheat must matter unclipped: {unclipped}"
    );
    // TAU = 2e-4 is about the honest miners' spread (RMS of one honest
    // gradient minus their average, measured 1.6e-4 on this corpus).
    assert!(
        clipped < 0.25 && clipped < unclipped / 20.0,
        "clipping must keep the average near the honest one: {clipped} (plain mean {unclipped})"
    );
    // and the miners applied the validator's model every epoch, cheater included
    check_agreement(&work, &eps, &vec![vec![0, 1, 2]; 3]);
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn pkill(pattern: &str) {
    let st = Command::new("pkill")
        .args(["-KILL", "-f", pattern])
        .status()
        .unwrap();
    assert!(st.success(), "nothing matched {pattern}");
}

#[test]
fn a_miner_killed_mid_reduce_leaves_the_round_and_rejoins_after_restart() {
    let _one = alone();
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("swarm");
    // a slow wire (2 MB/s per miner) so that the reduce takes seconds
    let mut sw = swarm_cmd(&work, &["--epochs", "3"], &[("DTRAIN_MAX_RATE", "2")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    struct Reaper(Vec<Child>);
    impl Drop for Reaper {
        fn drop(&mut self) {
            for c in &mut self.0 {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
    let log = work.join("miner-1.log");
    wait_for(
        "miner-1 to start epoch 1's reduce",
        Duration::from_secs(300),
        || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("epoch 1: reduce")
        },
    );
    // in the middle of the transfer: kill the miner's loop and its reduce
    std::thread::sleep(Duration::from_secs(2));
    let env = work.join("miner-1.env");
    pkill(&format!("miner.sh --env {}", env.display()));
    pkill(&format!(
        "reduce --peers {}/miner-1/epoch-1/peers.toml --me miner-1",
        work.display()
    ));
    // the others finish epoch 1 without it (the validator logs "done" once
    // epoch 2's tag is out)
    let vlog = work.join("validator.log");
    wait_for("epoch 1 to end", Duration::from_secs(300), || {
        std::fs::read_to_string(&vlog)
            .unwrap_or_default()
            .contains("epoch 1 done")
    });
    let eps = epochs(&work);
    assert!(eps[1].get("no_update").is_none(), "{}", eps[1]);
    assert_eq!(
        eps[1]["members"],
        serde_json::json!(["miner-0", "miner-2", "validator"]),
        "{}",
        eps[1]
    );
    assert_eq!(
        eps[1]["failures"],
        serde_json::json!(["miner-1"]),
        "{}",
        eps[1]
    );
    // restart it as its systemd timer would (`--once`: the next epoch not done
    // yet, then exit): it picks up the round's model and takes part in epoch 2
    let restarted = Command::new(root().join("scripts/miner.sh"))
        .args(["--env", s(&env), "--once"])
        .stdout(std::fs::File::create(work.join("miner-1-restarted.log")).unwrap())
        .stderr(std::fs::File::create(work.join("miner-1-restarted.err")).unwrap())
        .spawn()
        .unwrap();
    let mut reaper = Reaper(vec![restarted]);
    let mut swarm_out = String::new();
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = sw.try_wait().unwrap() {
            break st;
        }
        assert!(t0.elapsed() < Duration::from_secs(400), "the swarm hung");
        std::thread::sleep(Duration::from_millis(200));
    };
    sw.stdout
        .take()
        .unwrap()
        .read_to_string(&mut swarm_out)
        .unwrap();
    let mut swarm_err = String::new();
    sw.stderr
        .take()
        .unwrap()
        .read_to_string(&mut swarm_err)
        .unwrap();
    if !status.success() {
        dump_logs(&work);
    }
    assert!(status.success(), "{swarm_out}\n{swarm_err}");
    eprintln!("{swarm_out}");
    let st = reaper.0[0].wait().unwrap();
    assert!(
        st.success(),
        "{}",
        std::fs::read_to_string(work.join("miner-1-restarted.err")).unwrap()
    );
    reaper.0.clear();
    let eps = epochs(&work);
    assert_eq!(eps.len(), 3);
    assert_eq!(
        eps[2]["members"],
        serde_json::json!(["miner-0", "miner-1", "miner-2", "validator"]),
        "the restarted miner rejoins: {}",
        eps[2]
    );
    // the ledger names who contributed
    let ledger = dtrain::ledger::read(&work.join("validator/ledger.jsonl"), None).unwrap();
    assert_eq!(ledger[1].contributors, ["miner-0", "miner-2", "validator"]);
    assert_eq!(ledger[2].contributors.len(), 4);
    // miner-1 has no model of its own for epoch 1; after epoch 2 it agrees
    assert!(!work.join("miner-1/applied-1").exists());
    check_agreement(&work, &eps, &[vec![0, 1, 2], vec![0, 2], vec![0, 1, 2]]);
    assert_decreasing(&losses(&eps));
}

fn run_ok(args: &[&str]) -> Value {
    let o = dtrain(args, b"");
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap_or(Value::Null)
}

/// Three miners with K sequences each, averaging with `reduce` and stepping
/// with `apply`, for two epochs, end where one process that trains on all 3K
/// sequences per step ends.
#[test]
fn distributed_training_equals_centralized_training() {
    let _machine = beside_others();
    const K: usize = 4;
    const T: usize = 32;
    let dir = tempfile::tempdir().unwrap();
    let p = |f: &str| dir.path().join(f);
    let text = read(&fixture("tinyshakespeare.txt"));
    let shard = p("shard.bin");
    let o = dtrain(
        &["tokenize", "--format", "text", "-o", s(&shard)],
        &text.as_bytes()[..200_000],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    run_ok(&["init", "--arch", "tiny", "--seed", "3", "-o", s(&p("d0"))]);
    std::fs::create_dir_all(p("c0")).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(p("d0").join(f), p("c0").join(f)).unwrap();
    }
    let names = ["a", "b", "c"];
    let mut toml = String::new();
    for n in names {
        let pk = dtrain(&["keygen", "-o", s(&p(&format!("{n}.key")))], b"");
        toml += &peer_entry(n, String::from_utf8(pk.stdout).unwrap().trim());
    }
    std::fs::write(p("peers.toml"), toml).unwrap();
    let train = |model: &Path, seqs: String, out: &Path| -> Value {
        run_ok(&[
            "train-step",
            "--model",
            s(model),
            "--tokens",
            s(&shard),
            "--seq-len",
            &T.to_string(),
            "--micro-batch",
            "2",
            "--sequences",
            &seqs,
            "--device",
            "cpu",
            "-o",
            s(out),
            "--receipt",
            s(&out.with_extension("receipt.json")),
            "--json",
        ])
    };
    let apply = |model: &Path, grad: &Path, epoch: usize, out: &Path| {
        run_ok(&[
            "apply",
            "--model",
            s(model),
            "--grad",
            s(grad),
            "--optim",
            "adamw",
            "--lr",
            "1e-3",
            "--epoch",
            &epoch.to_string(),
            "-o",
            s(out),
        ]);
    };
    let mut dist_loss = Vec::new();
    let mut cent_loss = Vec::new();
    for e in 0..2 {
        let base = e * 3 * K;
        // distributed: each miner its K sequences, then a real reduce
        let dm = p(&format!("d{e}"));
        let mut loss = 0.0;
        for (i, n) in names.iter().enumerate() {
            let first = base + i * K;
            let r = train(
                &dm,
                format!("{first}-{}", first + K - 1),
                &p(&format!("{n}-{e}.safetensors")),
            );
            loss += r["loss"].as_f64().unwrap() / 3.0;
        }
        dist_loss.push(loss);
        let kids: Vec<Child> = names
            .iter()
            .map(|n| {
                Command::new(bin())
                    .args(["reduce", "--peers", s(&p("peers.toml")), "--me", n])
                    .args(["--key", s(&p(&format!("{n}.key")))])
                    .args(["--round", &format!("epoch-{e}"), "--deadline", "60"])
                    .args(["--in", s(&p(&format!("{n}-{e}.safetensors")))])
                    .args(["--out", s(&p(&format!("{n}-{e}.avg.safetensors")))])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for k in kids {
            let o = k.wait_with_output().unwrap();
            assert!(o.status.success(), "{}", stderr(&o));
        }
        let avg = p(&format!("a-{e}.avg.safetensors"));
        for n in &names[1..] {
            assert_eq!(hash(&avg), hash(&p(&format!("{n}-{e}.avg.safetensors"))));
        }
        apply(&dm, &avg, e, &p(&format!("d{}", e + 1)));
        // centralized: one process, all 3K sequences per step
        let cm = p(&format!("c{e}"));
        let r = train(
            &cm,
            format!("{base}-{}", base + 3 * K - 1),
            &p(&format!("central-{e}.safetensors")),
        );
        cent_loss.push(r["loss"].as_f64().unwrap());
        apply(
            &cm,
            &p(&format!("central-{e}.safetensors")),
            e,
            &p(&format!("c{}", e + 1)),
        );
    }
    // the averaged gradient of epoch 0 against the centralized one (the same
    // model, the same 3K sequences): equal up to float summation order
    let ga = dtrain::tensors::TensorFile::open(p("a-0.avg.safetensors")).unwrap();
    let gc = dtrain::tensors::TensorFile::open(p("central-0.safetensors")).unwrap();
    let (ga, gc) = (ga.flat_f32().unwrap(), gc.flat_f32().unwrap());
    let g_scale = gc.iter().fold(0f32, |m, x| m.max(x.abs()));
    let g_diff = ga
        .iter()
        .zip(gc)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    // the models after two epochs
    let d = dtrain::tensors::TensorFile::open(p("d2/model.safetensors")).unwrap();
    let c = dtrain::tensors::TensorFile::open(p("c2/model.safetensors")).unwrap();
    let d0 = dtrain::tensors::TensorFile::open(p("d0/model.safetensors")).unwrap();
    let (d, c, d0) = (
        d.flat_f32().unwrap(),
        c.flat_f32().unwrap(),
        d0.flat_f32().unwrap(),
    );
    let max_diff = d.iter().zip(c).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    let norm = |f: &dyn Fn(usize) -> f32| {
        (0..d.len())
            .map(|i| (f(i) as f64).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let rel_diff = norm(&|i| d[i] - c[i]) / norm(&|i| d[i] - d0[i]);
    let loss_diff = dist_loss
        .iter()
        .zip(&cent_loss)
        .fold(0f64, |m, (a, b)| m.max((a - b).abs()));
    eprintln!(
        "distributed vs centralized: gradient max |Δg| {g_diff:.2e} (max |g| {g_scale:.2e}); \
         after 2 epochs max |Δθ| {max_diff:.2e}, ‖Δθ‖/‖θ₂−θ₀‖ {rel_diff:.2e}, max |Δloss| {loss_diff:.2e}"
    );
    // Stated tolerances. The two runs differ only in float summation order
    // (f32 accumulation over 3K sequences against three f32 means combined in
    // f64), so gradients agree to ~1e-6 of their scale and losses to 1e-5.
    // AdamW divides by √v + ε (ε = 1e-8): where a gradient is ~ε, a rounding
    // difference moves that element's step by up to a few % of lr (1e-3), so
    // parameters agree to 5e-5 element-wise and to 1e-4 of the distance
    // trained in norm.
    assert!(g_diff <= 1e-6 * g_scale, "max |Δg| = {g_diff}");
    assert!(max_diff <= 5e-5, "max |Δθ| = {max_diff}");
    assert!(rel_diff <= 1e-4, "‖Δθ‖ relative = {rel_diff}");
    assert!(loss_diff <= 1e-5, "losses {dist_loss:?} vs {cent_loss:?}");
}

/// DiLoCo over the 1.6-bit wire (issue 13's e2e): 3 miners take 4 inner
/// steps an epoch, average their pseudo-gradients on the ternary wire with
/// error feedback (each residual kept in the miner's work folder), and apply
/// an outer Nesterov step. The loss falls, every member applies the same
/// model, and a miner that scales its pseudo-gradient and re-signs is caught
/// every epoch by the pseudo-gradient check; the honest ones pass with their
/// sampled segments and published residuals checked.
#[test]
fn diloco_on_the_ternary_wire_learns_agrees_and_catches_a_cheater() {
    let _one = alone();
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("swarm");
    let hook = root().join("tests/e2e/forge.sh").display().to_string();
    let args = [
        "--epochs",
        "3",
        "--inner-steps",
        "4",
        "--wire",
        "ternary",
        "--cheat-hook",
        &hook,
    ];
    let (out, eps) = swarm_ok(&work, &args, &[("DTRAIN_STATE_EVERY", "2")], 3);
    eprintln!("{out}");
    assert_decreasing(&losses(&eps));
    let eval: Vec<f64> = eps
        .iter()
        .map(|e| e["eval_loss"].as_f64().unwrap())
        .collect();
    assert_decreasing(&eval);
    check_agreement(&work, &eps, &vec![vec![0, 1, 2]; 3]);
    let model = work.join("validator/model-0/model.safetensors");
    let elements = dtrain::tensors::TensorFile::open(&model).unwrap().numel() as f64;
    for ep in &eps {
        assert_eq!(ep["rejected"], serde_json::json!(["miner-2"]), "{ep}");
        assert_eq!(ep["scores"]["miner-2"].as_f64(), Some(0.0), "{ep}");
        // what went through the validator (its whole result, and the
        // contributions to and results of the span it owns: 9 values' worth
        // an element, 36 bytes on f32): under 0.6 bytes an element on ternary
        let moved = ep["reduce_mb"].as_f64().unwrap() * 1e6;
        assert!(moved < elements * 0.6, "{moved} bytes: {ep}");
    }
    // the validator keeps the last two epochs' folders
    for e in 1..3 {
        let verdicts = jsonl(&work.join(format!("validator/epoch-{e}/verdicts.jsonl")));
        for v in &verdicts {
            let failed: Vec<&str> = v["checks"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["pass"] == false)
                .map(|c| c["name"].as_str().unwrap())
                .collect();
            if v["miner"] == "miner-2" {
                assert!(failed.contains(&"pseudo-gradient"), "{v}");
                continue;
            }
            assert_eq!(v["pass"], true, "{v}");
            assert_eq!(v["cost"], 0.5, "one segment of two: {v}");
            let names: Vec<&str> = v["checks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["name"].as_str().unwrap())
                .collect();
            for check in ["pseudo-gradient", "recomputation", "reduce"] {
                assert!(names.contains(&check), "{check} missing: {v}");
            }
            // after the first epoch, a residual was published and checked
            assert!(names.contains(&"residual"), "{v}");
        }
    }
    for m in 0..3 {
        let residual = work.join(format!("miner-{m}/residual.safetensors"));
        let f = dtrain::tensors::TensorFile::open(&residual).unwrap();
        assert_eq!(f.meta("wire").unwrap(), "ternary");
        assert_eq!(f.meta("round").unwrap(), "epoch-2");
    }
}

/// `swarm.sh --churn`: membership by signed rosters, not a peers file.
/// miner-1 stops after epoch 1 and leaves the roster; miner-3, in no file at
/// start, registers and joins at epoch 2; miner-2 accepts no connections and
/// takes part through the relay. Every member of every round ends with the
/// round's model; the ledger's contributors follow the rosters.
#[test]
fn churn_members_come_and_go_by_roster_and_one_is_reached_through_a_relay() {
    let _one = alone();
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("swarm");
    let (out, eps) = swarm_ok(&work, &["--churn"], &[], 4);
    eprintln!("{out}");
    let before = serde_json::json!(["miner-0", "miner-1", "miner-2", "validator"]);
    let after = serde_json::json!(["miner-0", "miner-2", "miner-3", "validator"]);
    for (e, want) in [(0, &before), (1, &before), (2, &after), (3, &after)] {
        assert_eq!(&eps[e]["members"], want, "epoch {e}: {}", eps[e]);
    }
    assert!(out.contains("members: miner-0,miner-2,miner-3"), "{out}");
    let ledger = dtrain::ledger::read(&work.join("validator/ledger.jsonl"), None).unwrap();
    let contributors: Vec<String> = ledger.iter().map(|e| e.contributors.join(",")).collect();
    assert_eq!(
        contributors,
        [
            "miner-0,miner-1,miner-2,validator",
            "miner-0,miner-1,miner-2,validator",
            "miner-0,miner-2,miner-3,validator",
            "miner-0,miner-2,miner-3,validator"
        ]
    );
    for (e, who) in [(1, vec![0, 1, 2]), (3, vec![0, 2, 3])] {
        for m in who {
            let applied = read(&work.join(format!("miner-{m}/applied-{e}")));
            assert_eq!(
                applied,
                eps[e]["model"].as_str().unwrap(),
                "miner-{m} after {e}"
            );
        }
    }
    // miner-2's links all ran through the relay; no peers file was written for the miners
    let t: Value =
        serde_json::from_str(&read(&work.join("miner-2/epoch-3/t/transcript.json"))).unwrap();
    let traffic = t["body"]["traffic"].as_array().unwrap();
    assert_eq!(traffic.len(), 3);
    assert!(traffic.iter().all(|l| l["relayed"] == true), "{traffic:?}");
    let env = read(&work.join("miner-3.env"));
    assert!(!env.contains("DTRAIN_PEERS"), "{env}");
    // three miners alive in every epoch: miner-1 gone from 2, the newcomer counted from 2
    assert_eq!(read(&work.join("alive")), "0 3\n1 3\n2 3\n3 3");
    let roster = read(&work.join("miner-0/epoch-3/round/roster.json"));
    assert!(roster.contains("\"relay\""), "{roster}");
}
