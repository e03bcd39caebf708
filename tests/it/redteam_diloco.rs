//! The red team against DiLoCo work (`train-step --inner-steps`): the
//! catalogue of cheats, each made as a cheater would (files rewritten, states
//! re-committed, the receipt re-signed with its own key), must FAIL `verify`
//! in this mode too, and honest work must pass at a sampled cost of a quarter
//! of the miner's compute (one segment of four).
use std::path::{Path, PathBuf};

use crate::common::*;
use crate::redteam::{failed_checks, receipt, s, save_signed, Miner, World};
use dtrain::inner::{open_state, write_state, StateCommit};
use dtrain::receipt::Receipt;
use dtrain::tensors::TensorFile;

const H: usize = 4;

fn diloco_world() -> World {
    let mut w = World::new();
    w.inner = [
        "--inner-steps",
        "4",
        "--inner-lr",
        "2e-3",
        "--state-every",
        "1",
    ]
    .map(String::from)
    .to_vec();
    w
}

fn flat(p: &Path) -> Vec<f32> {
    TensorFile::open(p).unwrap().flat_f32().unwrap().to_vec()
}

/// A second set of output paths for `m` (the cheater's scratch work).
fn scratch(w: &World, m: &Miner, tag: &str) -> Miner {
    Miner {
        name: m.name.clone(),
        key: m.key.clone(),
        pubkey: m.pubkey.clone(),
        spec: m.spec.clone(),
        shard: m.shard.clone(),
        grad: w.p(&format!("{}-{tag}.safetensors", m.name)),
        receipt: w.p(&format!("{}-{tag}.json", m.name)),
        states: w.p(&format!("{}-{tag}.states", m.name)),
    }
}

/// What a cheater publishes: `states[j]` (a state file, any inner step) as
/// the state after inner step j+1, the pseudo-gradient θ₀ − θ of the last,
/// and `r` pointing at all of it, re-signed with the cheater's own key.
fn republish(w: &World, m: &Miner, states: &[PathBuf], mut r: Receipt) {
    let ckpt = dtrain::model::Checkpoint::open(&w.model).unwrap();
    let specs = ckpt.specs();
    let optim = dtrain::optim::Optim::Adamw;
    let opened: Vec<_> = states
        .iter()
        .map(|p| open_state(p, &specs, optim).unwrap().0)
        .collect();
    let _ = std::fs::remove_dir_all(&m.states);
    std::fs::create_dir_all(&m.states).unwrap();
    let commits: Vec<StateCommit> = opened
        .iter()
        .enumerate()
        .map(|(j, st)| {
            let path = dtrain::inner::state_path(&m.states, j + 1);
            write_state(&path, &specs, optim, (&st.theta, &st.memory), j + 1).unwrap()
        })
        .collect();
    let theta0 = flat(&w.model.join("model.safetensors"));
    let last = &opened.last().unwrap().theta;
    let pseudo: Vec<f32> = theta0.iter().zip(last).map(|(a, b)| a - b).collect();
    let mut meta = TensorFile::open(&m.grad).unwrap().metadata().clone();
    meta.insert("sequences".into(), r.sequences.len().to_string());
    meta.insert("tokens".into(), r.tokens.to_string());
    meta.insert("inner_steps".into(), H.to_string());
    dtrain::tensors::write_flat_f32(&m.grad, &specs, &pseudo, &meta).unwrap();
    r.grad = dtrain::fsio::hash_file(&m.grad)
        .unwrap()
        .to_hex()
        .to_string();
    r.inner.as_mut().unwrap().states = commits;
    save_signed(m, r, &m.key);
}

/// The published state files of `m`, in order.
fn state_files(m: &Miner, n: usize) -> Vec<PathBuf> {
    (1..=n)
        .map(|j| dtrain::inner::state_path(&m.states, j))
        .collect()
}

/// `r` claiming `claimed`'s sequences and micro-batch structure, with the
/// losses and sketches of `done` (what a cheater computed) in their places.
fn relabelled(done: &Receipt, claimed: &Receipt) -> Receipt {
    let mut r = done.clone();
    r.sequences = claimed.sequences.clone();
    r.tokens = claimed.tokens;
    r.micro_batches = claimed.micro_batches.clone();
    let n = done.micro_batches.len();
    for (i, mb) in r.micro_batches.iter_mut().enumerate() {
        mb.loss = done.micro_batches[i % n].loss;
        mb.sketch = done.micro_batches[i % n].sketch.clone();
    }
    r.inner_steps = Some(H);
    r
}

#[test]
fn diloco_cheats_are_caught_and_honest_work_passes_at_a_quarter_of_the_cost() {
    let _machine = beside_others();
    let w = diloco_world();
    let mut table: Vec<(String, String)> = Vec::new();
    let sample = ["--sample", "1"];

    // honest: passes when one segment of four is recomputed, and in full
    for i in 0..3u64 {
        let m = w.miner("honest", i, 10 + i);
        let (code, v) = w.verify(&m, &w.model, &sample);
        assert_eq!(code, 0, "honest run {i} failed: {v}");
        assert_eq!(v["cost"], 0.25, "{v}");
        assert_eq!(failed_checks(&v), "", "{}", v["checks"]);
    }
    let m = w.miner("honest", 4, 20);
    assert_eq!(w.verify(&m, &w.model, &[]).0, 0);
    table.push((
        "honest (3 sampled + 1 full)".into(),
        "PASS, cost 0.25 sampled".into(),
    ));
    let mut caught = |case: &str, (code, v): (i32, serde_json::Value)| {
        assert_eq!(code, 1, "{case}: not caught: {v}");
        table.push((case.into(), format!("FAIL ({})", failed_checks(&v))));
    };

    // a random pseudo-gradient; an honest one scaled ×1.01 (file only)
    let m = w.miner("rand", 2, 0);
    crate::redteam::forge_grad(&m, |i, _| ((i * 2654435761usize) % 1000) as f32 * 1e-6);
    caught("random pseudo-gradient", w.verify(&m, &w.model, &sample));
    let m = w.miner("scaled", 3, 0);
    crate::redteam::forge_grad(&m, |_, x| x * 1.01);
    caught("pseudo-gradient x1.01", w.verify(&m, &w.model, &sample));

    // ×1.01 with the last state forged to match: the last segment gives it away
    let m = w.miner("scaled-state", 3, 0);
    let theta0 = flat(&w.model.join("model.safetensors"));
    let pseudo = flat(&m.grad);
    let files = state_files(&m, H);
    let ckpt = dtrain::model::Checkpoint::open(&w.model).unwrap();
    let (mut last, _) =
        open_state(&files[H - 1], &ckpt.specs(), dtrain::optim::Optim::Adamw).unwrap();
    last.theta = theta0
        .iter()
        .zip(&pseudo)
        .map(|(a, g)| a - 1.01 * g)
        .collect();
    let forged_last = w.p("forged-last.safetensors");
    write_state(
        &forged_last,
        &ckpt.specs(),
        dtrain::optim::Optim::Adamw,
        (&last.theta, &last.memory),
        H,
    )
    .unwrap();
    let mut chain = files[..H - 1].to_vec();
    chain.push(forged_last);
    republish(&w, &m, &chain, receipt(&m));
    caught(
        "x1.01 with a forged last state (full check)",
        w.verify(&m, &w.model, &[]),
    );

    // on a stale model
    let old = w.p("old-model");
    assert!(dtrain(
        &["init", "--arch", "tiny", "--seed", "8", "-o", s(&old)],
        b""
    )
    .status
    .success());
    let m = w.miner("stale", 4, 0);
    w.work(&m, 4, 0, &old, None);
    caught(
        "pseudo-gradient on a stale model",
        w.verify(&m, &w.model, &sample),
    );

    // half the inner steps taken (two of twice the batch), claimed as four
    let m = w.miner("skipper", 5, 0);
    let honest = receipt(&m);
    let two = [
        "--inner-steps",
        "2",
        "--inner-lr",
        "2e-3",
        "--state-every",
        "1",
    ]
    .map(String::from);
    let work = scratch(&w, &m, "two");
    w.train_with(&work, &w.model, &m.shard, None, &two);
    let done = Receipt::read(&work.receipt).unwrap();
    let halves = state_files(&work, 2);
    let chain = vec![
        halves[0].clone(),
        halves[0].clone(),
        halves[1].clone(),
        halves[1].clone(),
    ];
    republish(&w, &m, &chain, relabelled(&done, &honest));
    caught(
        "2 inner steps claimed as 4",
        w.verify(&m, &w.model, &sample),
    );

    // half the sequences trained on, all of them claimed
    let m = w.miner("fewer", 3, 1);
    let honest = receipt(&m);
    let n = honest.sequences.len();
    let work = scratch(&w, &m, "half");
    w.train(&work, &w.model, &m.shard, Some(&format!("0-{}", n / 2 - 1)));
    let done = Receipt::read(&work.receipt).unwrap();
    republish(&w, &m, &state_files(&work, H), relabelled(&done, &honest));
    caught(
        "half the sequences, all claimed",
        w.verify(&m, &w.model, &sample),
    );

    // another miner's pseudo-gradient and states, re-signed: with its shard,
    // and claiming the thief's own shard
    let victim = w.miner("victim", 5, 1);
    let thief = w.miner("thief", 6, 1);
    std::fs::copy(&victim.grad, &thief.grad).unwrap();
    std::fs::copy(&victim.shard, &thief.shard).unwrap();
    copy_tree(&victim.states, &thief.states);
    let mut r = receipt(&victim);
    r.miner = Some("thief".into());
    save_signed(&thief, r, &thief.key);
    caught(
        "another miner's pseudo-gradient",
        w.verify(&thief, &w.model, &sample),
    );
    let thief2 = w.miner("thief2", 6, 1);
    std::fs::copy(&victim.grad, &thief2.grad).unwrap();
    let _ = std::fs::remove_dir_all(&thief2.states);
    copy_tree(&victim.states, &thief2.states);
    let mut r = receipt(&victim);
    r.miner = Some("thief2".into());
    r.shard = receipt(&thief2).shard;
    save_signed(&thief2, r, &thief2.key);
    caught(
        "copied pseudo-gradient, own shard claimed",
        w.verify(&thief2, &w.model, &sample),
    );

    // trained on someone else's rows, submitted with that shard
    let m = w.miner("reuse", 0, 2);
    let other = w.miner("other", 1, 2);
    w.train(&m, &w.model, &other.shard, None);
    std::fs::copy(&other.shard, &m.shard).unwrap();
    caught("someone else's data", w.verify(&m, &w.model, &sample));

    // the round's settings are the validator's: another inner learning rate
    let mut greedy = w.inner.clone();
    greedy[3] = "1e-2".into();
    let m = w.miner("greedy", 1, 3);
    w.train_with(&m, &w.model, &m.shard, None, &greedy);
    caught(
        "another inner learning rate",
        w.verify(&m, &w.model, &sample),
    );

    println!("\n{:<44} verdict", "DiLoCo red-team case");
    for (c, v) in &table {
        println!("{c:<44} {v}");
    }
}
