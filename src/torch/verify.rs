//! `verify`: does a miner's gradient come from the work its receipt claims?
//!
//! Checks, in order, each with its own verdict line:
//!
//! 1. **signature** — the receipt is signed by the miner's key (pinned with
//!    `--pubkey`, else the key embedded in the receipt); when it is not,
//!    nothing else is checked; **receipt**: its own numbers are sane (no zero
//!    sequence length, no empty batch, finite losses), it names the expected
//!    miner (`--miner`) and round (`--round`: an old receipt cannot be
//!    replayed in a new epoch);
//! 2. **model** — receipt and gradient name the checkpoint being trained;
//! 3. **shard** — the token shard is the one the receipt names and, with a data
//!    spec, exactly the tokenization of the miner's assigned rows (re-fetched);
//!    with the subnet's assignment (`--seed --epoch --uid --rows`), the spec
//!    must be exactly the rows `assign` gives that miner in the validator's own
//!    data repo, config and revision;
//! 4. **gradient file** — its blake3, sequence count and token count are the
//!    receipt's;
//! 5. **linearity** — the sequence-weighted sum of the micro-batch sketches is
//!    the sketch of the gradient file ([`dtrain::sketch`]);
//! 6. **recomputation** — every micro-batch, or K chosen with the validator's
//!    own randomness (`--sample K`), is recomputed: its loss and sketch must
//!    match; a full recomputation also compares the whole gradient (per-tensor
//!    cosine and relative L2);
//! 7. **reduce** — with owners' transcripts, what the miner sent in the round
//!    hashes to what its gradient file gives, and the weight it announced is
//!    its receipt's sequence count. Only transcripts signed by the key the
//!    peers file pins for their writer count. An owner's record that
//!    contradicts the miner's own signed record is a *dispute* (listed in the
//!    verdict), not a failure, unless the owner is the validator itself.
//!
//! Anything wrong with what the miner published (receipt, spec, gradient,
//! transcripts) is a failed check: exit 1 and a verdict. Only the
//! validator's own inputs (model, corpus, flags) make verify exit 2 or 3.
//!
//! Tolerances ([`tolerances`]) depend on the device kind and precision and were
//! calibrated by recomputing honest work (see `scripts/calibrate.sh`).

use std::path::Path;
use std::time::Instant;

use rand_like::pick;
use serde::Serialize;
use tch::{Device, Kind};

use crate::gpt::Precision;
use crate::train::{Engine, StepOptions};
use dtrain::data::{Assignment, Corpus, DataSpec, Source};
use dtrain::keys::PublicKey;
use dtrain::model::Checkpoint;
use dtrain::receipt::Receipt;
use dtrain::reduce::peers::Peers;
use dtrain::reduce::transcript::Transcript;
use dtrain::reduce::wire::Wire;
use dtrain::sketch::{rel_distance, Sketcher};
use dtrain::tensors::{GradMeta, TensorFile};
use dtrain::tokens::Shard;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot verify: {0}")]
    Input(String),
    #[error(transparent)]
    Train(#[from] crate::train::Error),
    #[error(transparent)]
    Data(#[from] dtrain::data::Error),
    #[error(transparent)]
    Tensors(#[from] dtrain::tensors::Error),
    #[error(transparent)]
    Tokens(#[from] dtrain::tokens::Error),
}

/// How far an honest recomputation may stray.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Tolerances {
    /// Relative difference of a micro-batch's loss.
    pub loss: f64,
    /// Relative distance of a micro-batch's sketch.
    pub sketch: f64,
    /// Relative distance of Σ micro-batch sketches from the file's sketch.
    pub linearity: f64,
    /// Relative L2 distance of the recomputed whole gradient (and of each tensor).
    pub grad: f64,
}

/// Tolerances for recomputing work done on `device` ("cpu"/"cuda") in
/// `precision`. CPU f32 was measured with `scripts/calibrate.sh`: honest
/// train-steps (1 and 2 threads) recomputed with 1, 2 and 4 threads, tiny and
/// GPT-2 124M: worst loss 0 (bit-identical), sketch 7.8e-7, whole gradient
/// 5.9e-7 (worst tensor 7.8e-7), linearity 1.7e-7. The bounds sit 40–60×
/// above those. A 1% scaled gradient moves the sketch by 1e-2, three orders
/// above the bound. bf16 and CUDA bounds are provisional (no GPU in the
/// calibration run); bf16's 8-bit mantissa leaves ~4e-3 per operation, so they
/// sit at 5e-2: a validator that must catch small scalings recomputes in f32.
pub fn tolerances(device: &str, precision: &str) -> Tolerances {
    match (device, precision) {
        ("cpu", "f32") => Tolerances {
            loss: 4e-6,
            sketch: 3e-5,
            linearity: 1e-5,
            grad: 4e-5,
        },
        (_, "f32") => Tolerances {
            loss: 1e-4,
            sketch: 1e-3,
            linearity: 1e-5,
            grad: 1e-3,
        },
        _ => Tolerances {
            loss: 5e-2,
            sketch: 5e-2,
            linearity: 1e-4,
            grad: 5e-2,
        },
    }
}

/// The deviations this verification measured (relative).
#[derive(Debug, Serialize, Clone, Copy, Default)]
pub struct Measured {
    pub linearity: Option<f64>,
    pub loss: Option<f64>,
    pub sketch: Option<f64>,
    pub grad: Option<f64>,
    pub worst_tensor: Option<f64>,
}

#[derive(Debug, Serialize, Clone)]
pub struct Check {
    pub name: String,
    pub pass: bool,
    pub detail: String,
}

#[derive(Debug, Serialize)]
pub struct Verdict {
    pub miner: Option<String>,
    pub pubkey: Option<String>,
    pub model: String,
    pub shard: String,
    pub grad: String,
    pub pass: bool,
    pub checks: Vec<Check>,
    /// Verified distinct sequences (0 unless the verdict passes).
    pub sequences: u64,
    pub recomputed_micro_batches: Vec<usize>,
    /// Owners' records that contradict the miner's own (see [`check_reduce`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub disputes: Vec<String>,
    pub micro_batches: usize,
    pub tolerances: Tolerances,
    /// What was measured, for calibrating tolerances.
    pub measured: Measured,
    pub seconds: f64,
}

/// What the subnet (the validator's flags, not the miner's files) says a
/// miner's data must be.
#[derive(Clone, Debug)]
pub struct Expected {
    pub repo: String,
    pub config: String,
    pub revision: String,
    pub assignment: Assignment,
}

/// What to check against.
pub struct Inputs<'a> {
    pub receipt: &'a Receipt,
    pub grad: &'a Path,
    pub ckpt: &'a Checkpoint,
    pub shard: &'a Path,
    pub pubkey: Option<PublicKey>,
    /// A data spec and where to fetch its rows, to check the shard's content.
    pub spec: Option<(DataSpec, &'a Source)>,
    pub transcripts: &'a [Transcript],
    /// The peers file: a transcript counts only when signed by the key it pins for its writer.
    pub peers: Option<&'a Peers>,
    /// The subnet's own idea of the miner's data; the spec must be exactly that.
    pub expected: Option<Expected>,
    /// Whose work the validator expects this to be (the receipt must say so).
    pub miner: Option<&'a str>,
    /// The round the receipt must be for.
    pub round: Option<&'a str>,
    /// The validator's own peer name: its transcript's records are never disputed.
    pub validator: Option<&'a str>,
    /// Recompute this many random micro-batches instead of all.
    pub sample: Option<usize>,
    pub device: Device,
}

mod rand_like {
    /// k distinct indices of 0..n chosen with the OS's randomness.
    pub fn pick(n: usize, k: usize) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..n).collect();
        for i in 0..k.min(n) {
            let mut b = [0u8; 8];
            getrandom::getrandom(&mut b).expect("OS randomness");
            let j = i + (u64::from_le_bytes(b) as usize) % (n - i);
            idx.swap(i, j);
        }
        idx.truncate(k.min(n));
        idx.sort();
        idx
    }
}

fn check(checks: &mut Vec<Check>, name: &str, pass: bool, detail: impl Into<String>) -> bool {
    checks.push(Check {
        name: name.into(),
        pass,
        detail: detail.into(),
    });
    pass
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}

/// A receipt's claims are refused before any work when they are out of these bounds.
const MAX_SKETCH_K: usize = 4096;

/// Checks that a receipt is signed (by the pinned key when one is given).
fn check_signature(checks: &mut Vec<Check>, r: &Receipt, pubkey: Option<&PublicKey>) -> bool {
    let sig = r.check_signature(pubkey);
    let pinned = if pubkey.is_some() {
        "the miner's pinned key"
    } else {
        "the key in the receipt (not pinned: pass --pubkey)"
    };
    check(
        checks,
        "signature",
        sig.is_ok(),
        sig.as_ref()
            .map(|_| format!("valid, by {pinned}"))
            .unwrap_or_else(|e| e.clone()),
    )
}

/// The receipt's own numbers are sane, and it is the expected miner's for this round.
fn check_receipt(checks: &mut Vec<Check>, r: &Receipt, inp: &Inputs) -> bool {
    let n_seq = r.sequences.len();
    let why = if r.seq_len == 0 || r.micro_batch == 0 {
        Some("seq_len and micro_batch must be at least 1".to_string())
    } else if n_seq == 0 || r.micro_batches.is_empty() {
        Some("it lists no sequences".into())
    } else if r.sketch_k == 0 || r.sketch_k > MAX_SKETCH_K {
        Some(format!(
            "sketch_k {} is not in 1..={MAX_SKETCH_K}",
            r.sketch_k
        ))
    } else if r.micro_batches.len() as u64 > n_seq {
        Some("more micro-batches than sequences".into())
    } else if !r.loss.is_finite() || r.micro_batches.iter().any(|m| !m.loss.is_finite()) {
        Some("a loss is not finite".into())
    } else if let (Some(want), got) = (inp.miner, r.miner.as_deref()) {
        (got != Some(want)).then(|| format!("it names miner {got:?}, not {want}"))
    } else {
        None
    };
    let why = why.or_else(|| match (inp.round, r.round.as_deref()) {
        (Some(want), got) if got != Some(want) => Some(format!(
            "it is for round {got:?}, not {want} (an old receipt replayed?)"
        )),
        _ => None,
    });
    check(
        checks,
        "receipt",
        why.is_none(),
        why.unwrap_or_else(|| {
            format!(
                "{n_seq} sequences of {} tokens, round {}",
                r.seq_len,
                r.round.as_deref().unwrap_or("-")
            )
        }),
    )
}

/// Opens the miner's gradient file; a defect in it is the miner's.
fn open_grad(path: &Path) -> Result<(TensorFile, GradMeta), String> {
    let grad = TensorFile::open(path).map_err(|e| e.to_string())?;
    let meta = GradMeta::read(&grad).map_err(|e| e.to_string())?;
    Ok((grad, meta))
}

/// The spec is the one the subnet assigns this miner: the validator's own
/// data repo, config and revision, and the rows `assign` gives for its seed,
/// epoch, uid and row count over the corpus as the validator reads it.
fn check_assignment(spec: &DataSpec, exp: &Expected, corpus: &Corpus) -> Result<(), String> {
    spec_names_the_assignment(spec, exp)?;
    let files = corpus.spec_files();
    let rows = dtrain::data::assign(
        &exp.repo,
        &exp.config,
        &exp.revision,
        &files,
        &exp.assignment,
    )
    .map_err(|e| e.to_string())?;
    if rows != spec.rows || files != spec.files {
        return Err(format!(
            "the spec lists rows {}, the assignment gives {rows}",
            spec.rows
        ));
    }
    Ok(())
}

/// The spec's repo, config, revision and assignment are the subnet's; checked
/// before the corpus is opened too, so a miner's spec never chooses what is read.
fn spec_names_the_assignment(spec: &DataSpec, exp: &Expected) -> Result<(), String> {
    if (&spec.repo, &spec.config, &spec.revision) != (&exp.repo, &exp.config, &exp.revision) {
        return Err(format!(
            "the spec names {} {} at {}; the subnet's data is {} {} at {}",
            spec.repo, spec.config, spec.revision, exp.repo, exp.config, exp.revision
        ));
    }
    if spec.assignment.as_ref() != Some(&exp.assignment) {
        return Err(format!(
            "the spec's assignment is {:?}, this miner's is {:?}",
            spec.assignment, exp.assignment
        ));
    }
    Ok(())
}

/// A data error: the miner's (its spec does not fit the corpus) or the
/// validator's own (the corpus could not be read).
fn miners_data_fault(e: dtrain::data::Error) -> Result<String, Error> {
    use dtrain::data::Error as D;
    match e {
        D::Hub(_) | D::Io { .. } | D::Footer { .. } | D::Parquet { .. } | D::NoFiles(_) => {
            Err(Error::Data(e))
        }
        other => Ok(other.to_string()),
    }
}

/// Checks the shard's content against the spec's rows: `Ok(Err(why))` is the
/// miner's fault, `Err` the validator's.
fn shard_content(
    spec: &DataSpec,
    src: &Source,
    expected: Option<&Expected>,
    shard_hash: &str,
) -> Result<Result<String, String>, Error> {
    if let Some(Err(why)) = expected.map(|exp| spec_names_the_assignment(spec, exp)) {
        return Ok(Err(why));
    }
    let corpus = match Corpus::open(src, &dtrain::data::config_dir(&spec.config)) {
        Ok(c) => c,
        Err(e) => return miners_data_fault(e).map(Err),
    };
    if let Some(exp) = expected {
        if let Err(why) = check_assignment(spec, exp, &corpus) {
            return Ok(Err(why));
        }
    }
    if let Err(e) = corpus.check(spec) {
        return miners_data_fault(e).map(Err);
    }
    let mut docs = Vec::new();
    if let Err(e) = corpus.fetch(src, &spec.rows, |row| {
        docs.push(row.text);
        Ok(())
    }) {
        return miners_data_fault(e).map(Err);
    }
    let toks = dtrain::tokenizer::Tokenizer::gpt2()
        .encode_docs(&docs)
        .map_err(|e| Error::Input(e.to_string()))?;
    let want = dtrain::tokens::hash_of(&toks)?.to_hex().to_string();
    Ok(if want == shard_hash {
        Ok(format!(
            "{} = the tokenization of rows {}",
            &shard_hash[..16],
            spec.rows
        ))
    } else {
        Err(format!(
            "not the tokenization of the assigned rows {} (that would be {})",
            spec.rows,
            &want[..16]
        ))
    })
}

/// A verdict for work that could not even be read: `check` names what.
pub fn rejected(miner: Option<&str>, check: &str, detail: String) -> Verdict {
    Verdict {
        miner: miner.map(str::to_string),
        pubkey: None,
        model: String::new(),
        shard: String::new(),
        grad: String::new(),
        pass: false,
        checks: vec![Check {
            name: check.into(),
            pass: false,
            detail,
        }],
        sequences: 0,
        recomputed_micro_batches: Vec::new(),
        micro_batches: 0,
        tolerances: tolerances("cpu", "f32"),
        measured: Measured::default(),
        disputes: Vec::new(),
        seconds: 0.0,
    }
}

/// Runs every check. A defect in what the miner published is a failed check
/// in the verdict; `Err` is only for the validator's own inputs (model,
/// corpus, device).
pub fn verify(inp: &Inputs) -> Result<Verdict, Error> {
    let t0 = Instant::now();
    let r = inp.receipt;
    let mut checks = Vec::new();
    let mut measured = Measured::default();
    let tol = tolerances(crate::device::kind_name(inp.device), &r.precision);
    let stop = |checks: Vec<Check>, measured: Measured| {
        Ok(finish(
            inp,
            checks,
            0,
            Vec::new(),
            tol,
            measured,
            Vec::new(),
            t0,
        ))
    };

    // 1. signature: nothing in a receipt that is not the miner's is worth checking
    if !check_signature(&mut checks, r, inp.pubkey.as_ref()) || !check_receipt(&mut checks, r, inp)
    {
        return stop(checks, measured);
    }

    // 2. model
    let (grad, gmeta) = match open_grad(inp.grad) {
        Ok(g) => g,
        Err(why) => {
            check(&mut checks, "gradient file", false, why);
            return stop(checks, measured);
        }
    };
    let model_ok = r.model == inp.ckpt.hash && gmeta.model == inp.ckpt.hash;
    let mut ok = check(
        &mut checks,
        "model",
        model_ok,
        if model_ok {
            inp.ckpt.hash[..16].to_string()
        } else {
            format!(
                "receipt {} / gradient {} / checkpoint {}",
                &r.model[..16.min(r.model.len())],
                &gmeta.model[..16.min(gmeta.model.len())],
                &inp.ckpt.hash[..16]
            )
        },
    );

    // 3. shard (the validator's own tokenization of the rows)
    let shard = Shard::open(inp.shard)?;
    let shard_hash = dtrain::fsio::hash_file(inp.shard)
        .map_err(|e| Error::Input(format!("{}: {e}", inp.shard.display())))?
        .to_hex()
        .to_string();
    let mut shard_ok = shard_hash == r.shard;
    let mut detail = if shard_ok {
        shard_hash[..16].to_string()
    } else {
        format!(
            "the shard is {}, the receipt names {}",
            &shard_hash[..16],
            &r.shard[..16.min(r.shard.len())]
        )
    };
    if let (true, Some((spec, src))) = (shard_ok, &inp.spec) {
        let content = shard_content(spec, src, inp.expected.as_ref(), &shard_hash)?;
        shard_ok = content.is_ok();
        detail = content.unwrap_or_else(|why| why);
    }
    ok &= check(&mut checks, "shard", shard_ok, detail);

    // 4. gradient file
    let grad_hash = dtrain::fsio::hash_file(inp.grad)
        .map_err(|e| Error::Input(format!("{}: {e}", inp.grad.display())))?
        .to_hex()
        .to_string();
    let n_seq = r.sequences.len();
    let file_ok = grad_hash == r.grad
        && gmeta.sequences == n_seq
        && Some(gmeta.tokens) == n_seq.checked_mul(r.seq_len as u64);
    ok &= check(
        &mut checks,
        "gradient file",
        file_ok,
        if file_ok {
            format!("{} ({} sequences)", &grad_hash[..16], n_seq)
        } else {
            format!(
                "hash {} / {} sequences; the receipt says {} / {}",
                &grad_hash[..16],
                gmeta.sequences,
                &r.grad[..16.min(r.grad.len())],
                n_seq
            )
        },
    );
    // a file that is not this model's gradient cannot be checked further
    let model_file = TensorFile::open(inp.ckpt.dir.join(dtrain::model::MODEL_FILE))?;
    let readable = grad
        .check_same_layout(&model_file)
        .map_err(|e| e.to_string())
        .and_then(|()| grad.to_f32().map_err(|e| e.to_string()));
    let flat = match readable {
        Ok(flat) => flat,
        Err(why) => {
            check(&mut checks, "gradient layout", false, why);
            return stop(checks, measured);
        }
    };

    // 5. linearity of the sketches
    let mb_seqs: Vec<Vec<u64>> = r
        .micro_batches
        .iter()
        .map(|m| m.sequences.iter().collect())
        .collect();
    let listed: Vec<u64> = mb_seqs.iter().flatten().copied().collect();
    let structure_ok = listed == r.sequences.iter().collect::<Vec<_>>()
        && r.sketch_k > 0
        && r.micro_batches.iter().all(|m| m.sketch.len() == r.sketch_k);
    let sketcher = Sketcher::new(&r.model, &r.shard, r.sketch_k.max(1));
    let lin_ok = if structure_ok {
        let file_sketch = sketcher.sketch_cpu(&flat);
        let mut sum = vec![0f64; r.sketch_k];
        for (m, s) in r.micro_batches.iter().zip(&mb_seqs) {
            let w = s.len() as f64 / n_seq as f64;
            sum.iter_mut().zip(&m.sketch).for_each(|(a, b)| *a += w * b);
        }
        let d = rel_distance(&sum, &file_sketch);
        measured.linearity = Some(d);
        check(
            &mut checks,
            "linearity",
            d <= tol.linearity,
            format!(
                "Σ micro-batch sketches vs the file's sketch: {d:.2e} (tolerance {:.0e})",
                tol.linearity
            ),
        )
    } else {
        check(
            &mut checks,
            "linearity",
            false,
            "the receipt's micro-batches do not list its sequences with one sketch each",
        )
    };
    ok &= lin_ok;

    // 6. recomputation (skipped when the inputs already disagree: it would be meaningless)
    let mut recomputed = Vec::new();
    if model_ok && shard_ok && structure_ok {
        let precision = if r.precision == "bf16" {
            Precision::Bf16
        } else {
            Precision::F32
        };
        let opts = StepOptions {
            seq_len: r.seq_len,
            micro_batch: r.micro_batch,
            sequences: Some(r.sequences.clone()),
            device: inp.device,
            precision,
            sketch_k: r.sketch_k,
            miner: None,
            round: None,
        };
        let seqs = crate::train::select_sequences(shard.len(), &opts, inp.ckpt.config.n_positions)
            .and_then(|s| {
                crate::train::check_vocab(&shard, inp.ckpt.config.vocab_size).map(|()| s)
            });
        let seqs = match seqs {
            Ok(s) => s,
            Err(e) => {
                check(
                    &mut checks,
                    "recomputation",
                    false,
                    format!("the receipt's sequences do not fit the shard: {e}"),
                );
                return Ok(finish(
                    inp,
                    checks,
                    0,
                    recomputed,
                    tol,
                    measured,
                    Vec::new(),
                    t0,
                ));
            }
        };
        let dev = crate::sketch::on_device(&sketcher, inp.ckpt.config.num_params(), inp.device);
        let mut engine =
            crate::train::guarded(inp.device, || Engine::load(inp.ckpt, inp.device, precision))?;
        let chosen: Vec<usize> = match inp.sample {
            Some(k) if k < r.micro_batches.len() => pick(r.micro_batches.len(), k.max(1)),
            _ => (0..r.micro_batches.len()).collect(),
        };
        let full = chosen.len() == r.micro_batches.len();
        let mut worst_loss = 0f64;
        let mut worst_sketch = 0f64;
        let mut bad_mb = None;
        let mut sum: Option<tch::Tensor> = None;
        let bar = dtrain::progress::count_bar(chosen.len() as u64, "recomputing micro-batches");
        for &i in &chosen {
            bar.inc(1);
            let mb = &mb_seqs[i];
            let scale = if full {
                mb.len() as f64 / seqs.len() as f64
            } else {
                1.0
            };
            let (loss, flatg) = crate::train::guarded(inp.device, || {
                Ok(engine.micro_batch(shard.tokens(), mb, r.seq_len, scale))
            })?;
            let loss = loss.double_value(&[]);
            let sk: Vec<f64> = dev.sketch(&flatg).into_iter().map(|v| v / scale).collect();
            let dl = rel(loss, r.micro_batches[i].loss);
            let ds = rel_distance(&r.micro_batches[i].sketch, &sk);
            worst_loss = worst_loss.max(dl);
            worst_sketch = worst_sketch.max(ds);
            if (dl > tol.loss || ds > tol.sketch) && bad_mb.is_none() {
                bad_mb = Some((i, dl, ds));
            }
            if full {
                sum = Some(match sum {
                    None => flatg,
                    Some(a) => a + flatg,
                });
            }
            recomputed.push(i);
        }
        measured.loss = Some(worst_loss);
        measured.sketch = Some(worst_sketch);
        let what = if full {
            "all".to_string()
        } else {
            format!("{} sampled of {}", chosen.len(), r.micro_batches.len())
        };
        let mb_ok = bad_mb.is_none();
        ok &= check(
            &mut checks,
            "recomputation",
            mb_ok,
            match bad_mb {
                None => format!("{what} micro-batches: worst loss {worst_loss:.1e}, worst sketch {worst_sketch:.1e} (tolerances {:.0e}, {:.0e})", tol.loss, tol.sketch),
                Some((i, dl, ds)) => format!("micro-batch {i} ({}) does not match: loss {dl:.2e}, sketch {ds:.2e} off", r.micro_batches[i].sequences),
            },
        );
        if let Some(sum) = sum {
            let mine: Vec<f32> =
                Vec::<f32>::try_from(sum.to_kind(Kind::Float).to_device(Device::Cpu))
                    .map_err(|e| Error::Input(e.to_string()))?;
            let (mut worst_t, mut worst_name, mut min_cos) = (0f64, String::new(), 1f64);
            let mut off = 0;
            for e in grad.entries() {
                let n = e.spec.numel();
                let (a, b) = (&flat[off..off + n], &mine[off..off + n]);
                let (d, nb, dot, na) =
                    a.iter()
                        .zip(b)
                        .fold((0f64, 0f64, 0f64, 0f64), |(d, nb, dot, na), (&x, &y)| {
                            (
                                d + (x as f64 - y as f64).powi(2),
                                nb + (y as f64).powi(2),
                                dot + x as f64 * y as f64,
                                na + (x as f64).powi(2),
                            )
                        });
                let relt = d.sqrt() / nb.sqrt().max(1e-30);
                let cos = if na > 0.0 && nb > 0.0 {
                    dot / (na.sqrt() * nb.sqrt())
                } else {
                    1.0
                };
                if relt > worst_t {
                    worst_t = relt;
                    worst_name = e.spec.name.clone();
                }
                min_cos = min_cos.min(cos);
                off += n;
            }
            let d: f64 = flat
                .iter()
                .zip(&mine)
                .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
                .sum::<f64>()
                .sqrt();
            let nm: f64 = mine.iter().map(|&y| (y as f64).powi(2)).sum::<f64>().sqrt();
            let global = d / nm.max(1e-30);
            measured.grad = Some(global);
            measured.worst_tensor = Some(worst_t);
            ok &= check(
                &mut checks,
                "whole gradient",
                // small tensors (biases) carry more relative rounding: 10x per tensor
                global <= tol.grad && worst_t <= 10.0 * tol.grad,
                format!("relative L2 {global:.1e} (tolerance {:.0e}); worst tensor {worst_name} {worst_t:.1e}; min cosine {min_cos:.6}", tol.grad),
            );
        }
    } else {
        check(
            &mut checks,
            "recomputation",
            false,
            "skipped: the model, shard or receipt structure already failed",
        );
        ok = false;
    }

    // 7. what the miner sent in reduce rounds
    let mut disputes = Vec::new();
    if !inp.transcripts.is_empty() {
        let reduce = check_reduce(inp, &flat, n_seq);
        disputes = reduce.disputes;
        ok &= check(
            &mut checks,
            "reduce",
            reduce.failures.is_empty() && reduce.seen > 0,
            {
                if !reduce.failures.is_empty() {
                    reduce.failures.join("; ")
                } else if reduce.seen == 0 {
                    format!(
                        "no trusted transcript records a contribution from '{}'",
                        reduce.miner
                    )
                } else {
                    format!(
                        "its contributions to {} span(s) are its gradient",
                        reduce.seen
                    )
                }
            },
        );
        for note in reduce.ignored {
            checks.push(Check {
                name: "transcript ignored".into(),
                pass: true,
                detail: note,
            });
        }
    }

    let sequences = if ok { n_seq } else { 0 };
    let mut v = finish(
        inp, checks, sequences, recomputed, tol, measured, disputes, t0,
    );
    v.pass = ok && v.checks.iter().all(|c| c.pass);
    Ok(v)
}

/// What the transcripts say about one miner's part in the round.
struct ReduceFindings {
    miner: String,
    /// Spans whose owner recorded the miner's contribution.
    seen: usize,
    failures: Vec<String>,
    disputes: Vec<String>,
    /// Transcripts not believed, and why.
    ignored: Vec<String>,
}

/// Checks every trusted owner's record of what the miner sent, and what weight
/// the miner announced, against its gradient and receipt.
fn check_reduce(inp: &Inputs, flat: &[f32], n_seq: u64) -> ReduceFindings {
    let miner = inp
        .miner
        .map(str::to_string)
        .or_else(|| inp.receipt.miner.clone())
        .unwrap_or_default();
    let (trusted, ignored) = dtrain::reduce::transcript::trusted(inp.transcripts, inp.peers);
    let mut f = ReduceFindings {
        miner: miner.clone(),
        seen: 0,
        failures: Vec::new(),
        disputes: Vec::new(),
        ignored,
    };
    // the miner's own record of what it sent to each owner
    let own = trusted.iter().find(|t| t.body.me == miner);
    for t in &trusted {
        let announced = t.body.peers.iter().find(|p| p.name == miner);
        if let Some(w) = announced.and_then(|p| p.weight) {
            if w != n_seq {
                f.failures.push(format!(
                    "announced weight {w} in {}'s round; its receipt has {n_seq} sequences",
                    t.body.me
                ));
            }
        }
        let Ok(wire) = t.body.wire.parse::<WireName>().map(|w| w.0) else {
            continue;
        };
        for span in t.body.spans.iter().filter(|s| s.owner == t.body.me) {
            let Some(recorded) = span
                .contributors
                .iter()
                .find(|c| c.peer == miner)
                .and_then(|c| c.blake3.as_ref())
            else {
                continue;
            };
            let fits = span
                .start
                .checked_add(span.len)
                .is_some_and(|e| e <= flat.len());
            if t.body.elements != flat.len() || !fits || t.body.chunk == 0 {
                f.failures.push(format!(
                    "{}'s round averaged {} elements (span {}+{}), the gradient has {}",
                    t.body.me,
                    t.body.elements,
                    span.start,
                    span.len,
                    flat.len()
                ));
                continue;
            }
            let owner = t
                .body
                .peers
                .iter()
                .find(|p| p.name == span.owner)
                .map(|p| p.rank)
                .unwrap_or(0);
            let want = dtrain::reduce::contribution_hash(
                flat,
                owner,
                span.start,
                span.len,
                t.body.chunk,
                wire,
            );
            let want = blake3::Hash::from(want).to_hex().to_string();
            f.seen += 1;
            if &want == recorded {
                continue;
            }
            // the owner says the miner sent something else; if the miner's own
            // signed record says it sent its gradient, one of the two lies and
            // the validator cannot tell which: a dispute, unless the owner is
            // the validator itself, whose record it trusts
            let miner_says = own.and_then(|o| {
                o.body
                    .spans
                    .iter()
                    .find(|x| x.owner == span.owner && x.start == span.start)
                    .and_then(|x| x.contributors.iter().find(|c| c.peer == miner))
                    .and_then(|c| c.blake3.clone())
            });
            let owner_is_me = inp.validator == Some(span.owner.as_str());
            if miner_says.as_deref() == Some(want.as_str()) && !owner_is_me {
                f.disputes.push(format!(
                    "{} recorded another contribution from {miner} for span {}+{} than {miner} recorded sending",
                    span.owner, span.start, span.len
                ));
            } else {
                f.failures.push(format!(
                    "sent {} something other than its gradient's span",
                    span.owner
                ));
            }
        }
    }
    f
}

struct WireName(Wire);
impl std::str::FromStr for WireName {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Ok(WireName(match s {
            "f32" => Wire::F32,
            "bf16" => Wire::Bf16,
            "q8" => Wire::Q8,
            _ => return Err(()),
        }))
    }
}

#[allow(clippy::too_many_arguments)]
fn finish(
    inp: &Inputs,
    checks: Vec<Check>,
    sequences: u64,
    recomputed: Vec<usize>,
    tol: Tolerances,
    measured: Measured,
    disputes: Vec<String>,
    t0: Instant,
) -> Verdict {
    let r = inp.receipt;
    let pass = checks.iter().all(|c| c.pass);
    Verdict {
        miner: inp.miner.map(str::to_string).or_else(|| r.miner.clone()),
        pubkey: r.pubkey.clone(),
        model: r.model.clone(),
        shard: r.shard.clone(),
        grad: r.grad.clone(),
        pass,
        checks,
        sequences: if pass { sequences } else { 0 },
        recomputed_micro_batches: recomputed,
        micro_batches: r.micro_batches.len(),
        tolerances: tol,
        measured,
        disputes,
        seconds: t0.elapsed().as_secs_f64(),
    }
}
