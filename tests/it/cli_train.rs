//! init / train-step / apply / eval as processes: determinism, failure modes,
//! exit codes, and that failed commands write nothing.
use std::path::Path;

use crate::common::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn setup(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let m = dir.join("m");
    let o = dtrain(&["init", "--arch", "tiny", "--seed", "1", "-o", s(&m)], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    let shard = dir.join("s.bin");
    let text: String = (0..400)
        .map(|i| format!("Line {i} of some text, said the tester.\n"))
        .collect();
    let o = dtrain(
        &["tokenize", "--format", "lines", "-o", s(&shard)],
        text.as_bytes(),
    );
    assert!(o.status.success());
    (m, shard)
}

fn train(m: &Path, shard: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let r = out.with_extension("json");
    let mut args = vec![
        "train-step",
        "--model",
        s(m),
        "--tokens",
        s(shard),
        "--seq-len",
        "32",
        "--micro-batch",
        "2",
    ];
    args.extend_from_slice(&["--device", "cpu", "-o", s(out), "--receipt", s(&r)]);
    args.extend_from_slice(extra);
    dtrain(&args, b"")
}

#[test]
fn init_prints_the_hash_and_is_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let a = dtrain(
        &["init", "--seed", "4", "-o", s(&dir.path().join("a"))],
        b"",
    );
    let b = dtrain(
        &["init", "--seed", "4", "-o", s(&dir.path().join("b"))],
        b"",
    );
    let ha = String::from_utf8(a.stdout).unwrap();
    let hb = String::from_utf8(b.stdout).unwrap();
    assert_eq!(ha.split_whitespace().next(), hb.split_whitespace().next());
    let ck = dtrain::model::Checkpoint::open(dir.path().join("a")).unwrap();
    assert_eq!(ha.split_whitespace().next().unwrap(), ck.hash);
    let o = dtrain(
        &["init", "--arch", "gpt9", "-o", s(&dir.path().join("c"))],
        b"",
    );
    assert_fails(&o, 2, "unknown architecture 'gpt9'");
}

#[test]
fn train_step_writes_gradient_and_receipt_that_agree() {
    let dir = tempfile::tempdir().unwrap();
    let (m, shard) = setup(dir.path());
    let g = dir.path().join("g.safetensors");
    let o = train(&m, &shard, &g, &["--sequences", "0-4"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let receipt: dtrain::receipt::Receipt = dtrain::receipt::Receipt::from_json(
        &std::fs::read_to_string(g.with_extension("json")).unwrap(),
    )
    .unwrap();
    assert_eq!(receipt.micro_batches.len(), 3);
    assert_eq!(
        receipt.grad,
        dtrain::fsio::hash_file(&g).unwrap().to_hex().to_string()
    );
    let f = dtrain::tensors::TensorFile::open(&g).unwrap();
    let meta = dtrain::tensors::GradMeta::read(&f).unwrap();
    assert_eq!((meta.sequences, meta.tokens), (5, 160));
    assert_eq!(meta.model, receipt.model);
    let norm = dtrain::tensors::l2_norm(f.flat_f32().unwrap());
    assert!((norm - receipt.grad_norm).abs() < 1e-9 * norm);
}

#[test]
fn bad_sequence_selection_is_rejected_without_output() {
    let dir = tempfile::tempdir().unwrap();
    let (m, shard) = setup(dir.path());
    let g = dir.path().join("g.safetensors");
    assert_fails(
        &train(&m, &shard, &g, &["--sequences", "0-99999"]),
        2,
        "out of range",
    );
    assert_fails(
        &train(&m, &shard, &g, &["--sequences", "0-3,2"]),
        2,
        "names a sequence twice",
    );
    // a malformed value is a usage error, reported by clap in its own format
    let o = train(&m, &shard, &g, &["--sequences", "x"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("error: invalid value 'x' for '--sequences"),
        "{}",
        stderr(&o)
    );
    assert!(!g.exists() && !g.with_extension("json").exists());
}

/// Rewrites one tensor of a checkpoint's model.safetensors with NaN.
fn poison(ckpt: &Path) {
    let path = ckpt.join("model.safetensors");
    let f = dtrain::tensors::TensorFile::open(&path).unwrap();
    let specs = f.specs();
    let mut data: Vec<Vec<f32>> = specs
        .iter()
        .map(|s| f.tensor_f32(&s.name).unwrap().into_owned())
        .collect();
    data[1][0] = f32::NAN;
    drop(f);
    let refs: Vec<&[f32]> = data.iter().map(Vec::as_slice).collect();
    dtrain::tensors::write_f32(&path, &specs, &refs, &dtrain::model::model_metadata()).unwrap();
}

#[test]
fn nan_loss_exits_5_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (m, shard) = setup(dir.path());
    poison(&m);
    let g = dir.path().join("g.safetensors");
    assert_fails(
        &train(&m, &shard, &g, &["--sequences", "0-3"]),
        5,
        "not finite",
    );
    assert!(!g.exists() && !g.with_extension("json").exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        2,
        "no temp files left"
    );
}

#[test]
fn apply_checks_the_gradient_belongs_to_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let (m, shard) = setup(dir.path());
    let g = dir.path().join("g.safetensors");
    assert!(train(&m, &shard, &g, &["--sequences", "0-3"])
        .status
        .success());
    let other = dir.path().join("other");
    assert!(dtrain(&["init", "--seed", "2", "-o", s(&other)], b"")
        .status
        .success());
    let out = dir.path().join("next");
    let o = dtrain(
        &[
            "apply",
            "--model",
            s(&other),
            "--grad",
            s(&g),
            "--lr",
            "1e-3",
            "-o",
            s(&out),
        ],
        b"",
    );
    assert_fails(&o, 2, "the gradient was computed on model");
    assert!(!out.exists());

    // a good apply, then its state is carried to the next step
    let o = dtrain(
        &[
            "apply",
            "--model",
            s(&m),
            "--grad",
            s(&g),
            "--lr",
            "1e-3",
            "-o",
            s(&out),
        ],
        b"",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let g2 = dir.path().join("g2.safetensors");
    assert!(train(&out, &shard, &g2, &["--sequences", "4-7"])
        .status
        .success());
    let out2 = dir.path().join("next2");
    let o = dtrain(
        &[
            "apply",
            "--model",
            s(&out),
            "--grad",
            s(&g2),
            "--lr",
            "1e-3",
            "--json",
            "-o",
            s(&out2),
        ],
        b"",
    );
    let p: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(p["step"], 2);
    // a different optimizer cannot continue LAMB's state
    let o = dtrain(
        &[
            "apply",
            "--model",
            s(&out),
            "--grad",
            s(&g2),
            "--optim",
            "adamw",
            "--lr",
            "1e-3",
            "-o",
            s(&dir.path().join("next3")),
        ],
        b"",
    );
    assert_fails(&o, 2, "optimizer state");
    // an existing output is never overwritten without --force
    let before = hash_dir(&out2);
    let args = [
        "apply",
        "--model",
        s(&out),
        "--grad",
        s(&g2),
        "--lr",
        "1e-3",
        "-o",
        s(&out2),
    ];
    assert_fails(&dtrain(&args, b""), 2, "exists already; pass --force");
    assert_eq!(hash_dir(&out2), before);
    let o = dtrain(&[&args[..], &["--force"]].concat(), b"");
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn apply_refuses_a_nonfinite_gradient() {
    let dir = tempfile::tempdir().unwrap();
    let (m, shard) = setup(dir.path());
    let g = dir.path().join("g.safetensors");
    assert!(train(&m, &shard, &g, &["--sequences", "0-3"])
        .status
        .success());
    poison_grad(&g);
    let out = dir.path().join("next");
    let o = dtrain(
        &[
            "apply",
            "--model",
            s(&m),
            "--grad",
            s(&g),
            "--lr",
            "1e-3",
            "-o",
            s(&out),
        ],
        b"",
    );
    assert_fails(&o, 5, "NaN or Inf");
    assert!(!out.exists());
}

fn poison_grad(g: &Path) {
    let f = dtrain::tensors::TensorFile::open(g).unwrap();
    let specs = f.specs();
    let meta = f.metadata().clone();
    let mut flat = f.flat_f32().unwrap().to_vec();
    drop(f);
    flat[10] = f32::INFINITY;
    let mut parts = Vec::new();
    let mut o = 0;
    for s in &specs {
        parts.push(&flat[o..o + s.numel()]);
        o += s.numel();
    }
    dtrain::tensors::write_f32(g, &specs, &parts, &meta).unwrap();
}

#[test]
fn a_batch_that_does_not_fit_gives_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m");
    assert!(dtrain(&["init", "-o", s(&m)], b"").status.success());
    let shard = fixture("tinyshakespeare.txt");
    let tokens = dir.path().join("s.bin");
    assert!(dtrain(&["tokenize", s(&shard), "-o", s(&tokens)], b"")
        .status
        .success());
    let g = dir.path().join("g.safetensors");
    // 1.5 GB of address space cannot hold 256 × 1024 tokens of activations
    let script = format!(
        "ulimit -v 1500000; exec {} train-step --model {} --tokens {} --seq-len 1024 --micro-batch 256 \
         --sequences 0-255 --device cpu -o {} --receipt {}",
        bin().display(),
        s(&m),
        s(&tokens),
        s(&g),
        s(&g.with_extension("json"))
    );
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .output()
        .unwrap();
    assert_fails(
        &o,
        3,
        "does not fit in cpu memory: DefaultCPUAllocator: can't allocate memory",
    );
    assert!(!g.exists());
}

/// A writer killed with SIGKILL leaves its temporary behind (a whole GPT-2
/// checkpoint here); the next writer in that folder removes it, and leaves
/// alone the temporaries of processes that still run.
#[test]
fn a_killed_writers_temporary_is_removed_by_the_next_writer() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(bin())
        .args(["init", "--arch", "gpt2", "-o", s(&dir.path().join("big"))])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let temps = || -> Vec<String> {
        std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".big."))
            .collect()
    };
    let t0 = std::time::Instant::now();
    while temps().is_empty() && t0.elapsed() < std::time::Duration::from_secs(30) {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(temps().len(), 1, "the killed init left its temporary");
    // a live process's temporary (this test's own PID) must survive
    let live = dir
        .path()
        .join(format!(".x.tmp-{}-0123456789ab", std::process::id()));
    std::fs::write(&live, b"in use").unwrap();
    let o = dtrain(
        &["init", "--arch", "tiny", "-o", s(&dir.path().join("small"))],
        b"",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(temps().is_empty(), "left behind: {:?}", temps());
    assert!(live.exists(), "a running process's temporary was removed");
}

/// Numbers no one would mean are one error line and exit 2: a shard token
/// beyond the model's vocabulary (was a panic inside torch), a reduce
/// deadline or rate past what a Duration holds (was a Rust panic).
#[test]
fn out_of_vocabulary_tokens_and_absurd_durations_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (m, _) = setup(dir.path());
    let bad = dir.path().join("bad.bin");
    let mut tokens = vec![11u16; 200];
    tokens[77] = 60_000;
    dtrain::tokens::write_file(&bad, &tokens).unwrap();
    let o = dtrain(
        &[
            "eval",
            "--model",
            s(&m),
            "--tokens",
            s(&bad),
            "--seq-len",
            "16",
            "--device",
            "cpu",
        ],
        b"",
    );
    assert_fails(
        &o,
        2,
        "token 60000 at position 77 is outside the model's vocabulary",
    );
    let o = train(&m, &bad, &dir.path().join("g.safetensors"), &[]);
    assert_fails(&o, 2, "outside the model's vocabulary");
    assert!(!dir.path().join("g.safetensors").exists());
    for (flag, value) in [("--deadline", "1e300"), ("--max-rate", "1e-300")] {
        let o = dtrain(
            &[
                "reduce", "--peers", "p.toml", "--me", "a", "--key", "k", "--round", "r", "--in",
                "x", "--out", "y", flag, value,
            ],
            b"",
        );
        assert_fails(&o, 2, flag);
    }
}

/// A full disk is exit 3 with its cause said once, and leaves nothing behind
/// (needs a 1 MiB tmpfs: skipped where mounting one is not allowed).
#[test]
fn a_full_disk_is_exit_3_said_once() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = dir.path().join("tiny");
    std::fs::create_dir(&tiny).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs", s(&tiny)])
        .status()
        .is_ok_and(|st| st.success());
    if !mounted {
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    }
    let o = dtrain(&["init", "--arch", "tiny", "-o", s(&tiny.join("m"))], b"");
    let left = std::fs::read_dir(&tiny).unwrap().count();
    let _ = std::process::Command::new("umount").arg(&tiny).status();
    assert_eq!(left, 0, "a full disk left files behind");
    assert_fails(&o, 3, "No space left on device");
    assert_eq!(
        stderr(&o).matches("No space left on device").count(),
        1,
        "{}",
        stderr(&o)
    );
}

/// dtrain hash of a checkpoint folder.
fn hash_dir(p: &std::path::Path) -> String {
    let o = dtrain(&["hash", s(p)], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    String::from_utf8(o.stdout).unwrap()
}

/// DiLoCo's inner loop: `train-step --inner-steps 3` writes exactly θ₀ − θ₃
/// of three `train-step` + `apply --optim adamw` chained through checkpoint
/// files, one per third of the sequences (the same arithmetic, bit for bit),
/// and records the inner steps in the file and the receipt.
#[test]
fn inner_steps_equal_train_step_and_apply_chained() {
    let dir = tempfile::tempdir().unwrap();
    let (m0, shard) = setup(dir.path());
    let (lr, wd, clip) = ("2e-3", "0.1", "0.5");
    let pseudo = dir.path().join("pseudo.safetensors");
    let states = dir.path().join("states");
    let key = dir.path().join("miner.key");
    assert!(dtrain(&["keygen", "-o", s(&key)], b"").status.success());
    let inner = [
        "--key",
        s(&key),
        "--sequences",
        "0-11",
        "--inner-steps",
        "3",
        "--inner-lr",
        lr,
        "--inner-weight-decay",
        wd,
        "--inner-clip",
        clip,
        "--states",
        s(&states),
    ];
    let o = train(&m0, &shard, &pseudo, &inner);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut m = m0.clone();
    for h in 0..3 {
        let g = dir.path().join(format!("g{h}.safetensors"));
        let seqs = format!("{}-{}", 4 * h, 4 * h + 3);
        let o = train(&m, &shard, &g, &["--sequences", &seqs]);
        assert!(o.status.success(), "{}", stderr(&o));
        let next = dir.path().join(format!("m{}", h + 1));
        let o = dtrain(
            &[
                "apply",
                "--model",
                s(&m),
                "--grad",
                s(&g),
                "--optim",
                "adamw",
                "--lr",
                lr,
                "--weight-decay",
                wd,
                "--clip",
                clip,
                "-o",
                s(&next),
            ],
            b"",
        );
        assert!(o.status.success(), "{}", stderr(&o));
        m = next;
    }
    let flat = |p: &Path| {
        dtrain::tensors::TensorFile::open(p)
            .unwrap()
            .flat_f32()
            .unwrap()
            .to_vec()
    };
    let (theta0, theta3) = (
        flat(&m0.join("model.safetensors")),
        flat(&m.join("model.safetensors")),
    );
    let want: Vec<f32> = theta0.iter().zip(&theta3).map(|(a, b)| a - b).collect();
    let got = flat(&pseudo);
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert_eq!(
        worst, 0.0,
        "the pseudo-gradient differs from the chained steps by {worst}"
    );
    assert!(want.iter().any(|x| *x != 0.0));
    let f = dtrain::tensors::TensorFile::open(&pseudo).unwrap();
    assert_eq!(f.meta("inner_steps").unwrap(), "3");
    assert_eq!(
        f.meta("model").unwrap(),
        dtrain::model::Checkpoint::open(&m0).unwrap().hash
    );
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(pseudo.with_extension("json")).unwrap()).unwrap();
    assert_eq!(r["inner_steps"], 3);
    assert_eq!(r["micro_batches"].as_array().unwrap().len(), 6);
    // verify with the round's settings passes it (every segment recomputed);
    // a validator that expects plain gradients FAILs it, naming inner steps
    let receipt = pseudo.with_extension("json");
    let verify = |extra: &[&str]| {
        let mut args = vec![
            "verify",
            "--receipt",
            s(&receipt),
            "--grad",
            s(&pseudo),
            "--model",
            s(&m0),
            "--tokens",
            s(&shard),
            "--device",
            "cpu",
        ];
        args.extend_from_slice(extra);
        dtrain(&args, b"")
    };
    let round = [
        "--inner-steps",
        "3",
        "--inner-lr",
        lr,
        "--inner-weight-decay",
        wd,
        "--inner-clip",
        clip,
        "--states",
        s(&states),
    ];
    let o = verify(&round);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("pseudo-gradient"), "{}", stdout(&o));
    let o = verify(&[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("inner steps"), "{}", stderr(&o));

    // fewer sequences than inner steps, or no learning rate: one line, nothing written
    let bad = dir.path().join("bad.safetensors");
    let bad_states = dir.path().join("bad-states");
    let o = train(
        &m0,
        &shard,
        &bad,
        &[
            "--sequences",
            "0-1",
            "--inner-steps",
            "3",
            "--inner-lr",
            lr,
            "--states",
            s(&bad_states),
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("3 inner steps need at least 3 sequences"),
        "{}",
        stderr(&o)
    );
    let o = train(&m0, &shard, &bad, &["--inner-steps", "3"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(!bad.exists());
}

/// `--inner-state FILE` carries the inner optimizer across rounds: the second
/// round starts from the first's moments (its pseudo-gradient differs from a
/// fresh loop's), publishes that start as state 0, and verify accepts it only
/// against the miner's previous receipt, whose last moments it must be.
#[test]
fn inner_state_carries_across_rounds_and_verify_holds_it_to_the_previous_receipt() {
    let dir = tempfile::tempdir().unwrap();
    let (m0, shard) = setup(dir.path());
    let key = dir.path().join("miner.key");
    assert!(dtrain(&["keygen", "-o", s(&key)], b"").status.success());
    let carry = dir.path().join("inner-state.safetensors");
    let inner = ["--inner-steps", "2", "--inner-lr", "2e-3"];
    let round = |name: &str, seqs: &str, carried: bool| {
        let out = dir.path().join(format!("{name}.safetensors"));
        let states = dir.path().join(format!("{name}.states"));
        let mut args = vec![
            "--key",
            s(&key),
            "--sequences",
            seqs,
            "--states",
            s(&states),
        ];
        args.extend_from_slice(&inner);
        if carried {
            args.extend_from_slice(&["--inner-state", s(&carry)]);
        }
        let o = train(&m0, &shard, &out, &args);
        assert!(o.status.success(), "{}", stderr(&o));
        (out, states)
    };
    let (_, _) = round("r1", "0-7", true);
    assert!(carry.exists(), "the carried state was not written");
    let (carried, carried_states) = round("r2", "8-15", true);
    let (fresh, _) = round("fresh", "8-15", false);
    assert_ne!(
        std::fs::read(&carried).unwrap(),
        std::fs::read(&fresh).unwrap(),
        "the carried moments changed nothing"
    );
    assert!(carried_states.join("state-000000.safetensors").exists());
    let receipt = carried.with_extension("json");
    let verify = |previous: Option<&Path>| {
        let mut args = vec!["verify", "--receipt", s(&receipt), "--grad", s(&carried)];
        args.extend_from_slice(&["--model", s(&m0), "--tokens", s(&shard), "--device", "cpu"]);
        args.extend_from_slice(&["--states", s(&carried_states)]);
        args.extend_from_slice(&inner);
        if let Some(p) = previous {
            args.extend_from_slice(&["--previous-receipt", s(p)]);
        }
        dtrain(&args, b"")
    };
    let r1 = dir.path().join("r1.json");
    let o = verify(Some(&r1));
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let o = verify(None);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--previous-receipt"), "{}", stderr(&o));
    // a previous receipt whose moments are not the carried ones: the fresh round's
    let o = verify(Some(&dir.path().join("fresh.json")));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("carried moments"), "{}", stderr(&o));
}
