//! Verification: does a miner's gradient come from the work its receipt claims?
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
//!    the sketch of the gradient file ([`crate::sketch`]);
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
//! A DiLoCo pseudo-gradient (`--inner-steps`) replaces checks 5 and 6 with
//! those of [`inner`]: the receipt's inner settings are the subnet's, the
//! file is θ₀ minus the last published state's parameters bit for bit, and
//! sampled segments of the inner loop recompute from their published start
//! state to their published end state.
//!
//! Anything wrong with what the miner published (receipt, spec, gradient,
//! transcripts) is a failed check: exit 1 and a verdict. Only the
//! validator's own inputs (model, corpus, flags) make verify exit 2 or 3.
//!
//! This module holds every check that needs no model; the recomputation
//! (check 6) runs in the torch crate (`dtrain_torch::verify`), which calls
//! these checks in order around it.
//!
//! Tolerances ([`tolerances`]) depend on the device kind and precision and were
//! calibrated by recomputing honest work (see `scripts/calibrate.sh`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::data::{Assignment, Corpus, DataSpec, Source};
use crate::keys::PublicKey;
use crate::model::Checkpoint;
use crate::receipt::Receipt;
use crate::reduce::peers::Peers;
use crate::reduce::transcript::Transcript;
use crate::reduce::wire::Wire;
use crate::sketch::{rel_distance, Sketcher};
use crate::tensors::{GradMeta, TensorFile};

pub mod inner;
pub use inner::ExpectedInner;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot verify: {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Data(#[from] crate::data::Error),
    #[error(transparent)]
    Tensors(#[from] crate::tensors::Error),
    #[error(transparent)]
    Tokens(#[from] crate::tokens::Error),
    #[error(transparent)]
    Tokenizer(#[from] crate::tokenizer::Error),
}

fn hash_of(path: &Path) -> Result<String, Error> {
    crate::fsio::hash_file(path)
        .map(|h| h.to_hex().to_string())
        .map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })
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
    /// DiLoCo: relative L2 distance of a recomputed segment's end state from
    /// the published one (parameters: relative to the segment's displacement).
    pub segment: f64,
}

/// Tolerances for recomputing, on `device` ("cpu"/"cuda"), work done in
/// `precision`. Derived from honest spreads measured with
/// `scripts/calibrate.sh` (CPU) and `scripts/bench/gpu-suite.sh` on the H200
/// (2026-12-04; README, "On a GPU"), two honest gradients and one DiLoCo round
/// per miner/validator pairing:
/// - CPU f32 miner, CPU validator: worst loss 0, sketch 7.8e-7, whole
///   gradient 5.9e-7, linearity 1.7e-7, segment 0. Bounds 40–60× above.
/// - CPU f32 miner, CUDA validator: loss 1.9e-7, sketch 1.4e-6, gradient
///   7.2e-7, segment 3.8e-5. Bounds ~50× above.
/// - CUDA bf16 miner: bit-identical on a CUDA validator (same GPU and
///   libtorch); on a CPU validator (bf16 there too) loss 1.9e-5, sketch
///   1.7e-2, gradient 1.5e-2, segment 5.8e-2. A validator cannot know which
///   GPU a miner has, so bf16 takes the cross-device spread: sketch and
///   gradient at 2.5e-2, the geometric middle between that spread and what
///   ×1.04 moves them by (3.6e-2–4.1e-2 measured, the receipt's sketches
///   scaled to match), so ×1.04 is caught and ×1.01 is not (bf16 rounding
///   alone moves an honest sketch by 1.7e-2); segment 0.15 (2.6×).
///
/// Linearity is summed where the gradient is, in f32: 1.9e-7 worst anywhere.
pub fn tolerances(device: &str, precision: &str) -> Tolerances {
    match (device, precision) {
        ("cpu", "f32") => Tolerances {
            loss: 4e-6,
            sketch: 3e-5,
            linearity: 1e-5,
            grad: 4e-5,
            segment: 1e-3,
        },
        (_, "f32") => Tolerances {
            loss: 1e-5,
            sketch: 1e-4,
            linearity: 1e-5,
            grad: 1e-4,
            segment: 2e-3,
        },
        _ => Tolerances {
            loss: 1e-3,
            sketch: 2.5e-2,
            linearity: 1e-5,
            grad: 2.5e-2,
            segment: 0.15,
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
    /// DiLoCo: the worst recomputed segment's end-state distance.
    pub segment: Option<f64>,
}

/// One line of a verdict.
#[derive(Debug, Serialize, Clone)]
pub struct Check {
    pub name: String,
    pub pass: bool,
    pub detail: String,
}

/// What a check found: it passed (with what it saw) or failed (with why).
pub enum Finding {
    Pass(String),
    Fail(String),
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
    /// The share of the miner's micro-batches recomputed: the validator's
    /// cost relative to the miner's compute.
    pub cost: f64,
    /// Owners' records that contradict the miner's own (see [`Verification::reduce`]).
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
    /// Recompute this many random micro-batches (DiLoCo: segments) instead of all.
    pub sample: Option<usize>,
    /// DiLoCo: the inner loop the subnet expects (None: a plain gradient).
    pub inner: Option<ExpectedInner<'a>>,
    /// The error-feedback residual the miner published for the round.
    pub residual: Option<&'a Path>,
}

pub fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}

/// A receipt's claims are refused before any work when they are out of these bounds.
const MAX_SKETCH_K: usize = 4096;

/// A verification under way: the checks so far and what they measured.
/// Each check is one method, called in the order of the module's list; a
/// defect in what the miner published is a failed check, `Err` only the
/// validator's own inputs (model, corpus).
pub struct Verification<'a> {
    pub inp: &'a Inputs<'a>,
    pub checks: Vec<Check>,
    pub measured: Measured,
    pub tol: Tolerances,
    pub disputes: Vec<String>,
    started: Instant,
}

/// The miner's gradient file, opened.
pub struct Gradient {
    pub file: TensorFile,
    pub meta: GradMeta,
}

impl<'a> Verification<'a> {
    /// Starts verifying `inp` with the tolerances of recomputing on
    /// `device_kind` ("cpu", "cuda") in the receipt's precision.
    pub fn new(inp: &'a Inputs<'a>, device_kind: &str) -> Self {
        Verification {
            tol: tolerances(device_kind, &inp.receipt.precision),
            inp,
            checks: Vec::new(),
            measured: Measured::default(),
            disputes: Vec::new(),
            started: Instant::now(),
        }
    }

    /// Records a check; returns whether it passed.
    pub fn record(&mut self, name: &str, finding: Finding) -> bool {
        let (pass, detail) = match finding {
            Finding::Pass(d) => (true, d),
            Finding::Fail(d) => (false, d),
        };
        self.checks.push(Check {
            name: name.into(),
            pass,
            detail,
        });
        pass
    }

    fn receipt(&self) -> &'a Receipt {
        self.inp.receipt
    }

    /// Check 1: the receipt is signed (by the pinned key when one is given).
    pub fn signature(&mut self) -> bool {
        let pubkey = self.inp.pubkey.as_ref();
        let pinned = if pubkey.is_some() {
            "the miner's pinned key"
        } else {
            "the key in the receipt (not pinned: pass --pubkey)"
        };
        let finding = match self.receipt().check_signature(pubkey) {
            Ok(_) => Finding::Pass(format!("valid, by {pinned}")),
            Err(e) => Finding::Fail(e.to_string()),
        };
        self.record("signature", finding)
    }

    /// Check 1: the receipt's own numbers are sane, and it is the expected miner's for this round.
    pub fn receipt_claims(&mut self) -> bool {
        let (r, inp) = (self.receipt(), self.inp);
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
        } else if let Some(why) = self.inner_claims() {
            Some(why)
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
        let finding = match why {
            Some(why) => Finding::Fail(why),
            None => Finding::Pass(format!(
                "{n_seq} sequences of {} tokens, round {}",
                r.seq_len,
                r.round.as_deref().unwrap_or("-")
            )),
        };
        self.record("receipt", finding)
    }

    /// Opens the miner's gradient file; a defect in it is the miner's.
    pub fn open_gradient(&mut self) -> Option<Gradient> {
        let opened = TensorFile::open(self.inp.grad)
            .and_then(|file| GradMeta::read(&file).map(|meta| Gradient { file, meta }));
        match opened {
            Ok(g) => Some(g),
            Err(e) => {
                self.record("gradient file", Finding::Fail(e.to_string()));
                None
            }
        }
    }

    /// Check 2: receipt and gradient name the checkpoint being trained.
    pub fn model(&mut self, grad: &Gradient) -> bool {
        let (r, ckpt) = (self.receipt(), self.inp.ckpt);
        let short = |s: &str| s[..16.min(s.len())].to_string();
        let finding = if r.model == ckpt.hash && grad.meta.model == ckpt.hash {
            Finding::Pass(short(&ckpt.hash))
        } else {
            Finding::Fail(format!(
                "receipt {} / gradient {} / checkpoint {}",
                short(&r.model),
                short(&grad.meta.model),
                short(&ckpt.hash)
            ))
        };
        self.record("model", finding)
    }

    /// Check 3: the shard is the receipt's and (with a spec) the tokenization of
    /// the miner's assigned rows.
    pub fn shard(&mut self) -> Result<bool, Error> {
        let r = self.receipt();
        let shard_hash = hash_of(self.inp.shard)?;
        let finding = if shard_hash != r.shard {
            Finding::Fail(format!(
                "the shard is {}, the receipt names {}",
                &shard_hash[..16],
                &r.shard[..16.min(r.shard.len())]
            ))
        } else if let Some((spec, src)) = &self.inp.spec {
            shard_content(spec, src, self.inp.expected.as_ref(), &shard_hash)?
        } else {
            Finding::Pass(shard_hash[..16].to_string())
        };
        Ok(self.record("shard", finding))
    }

    /// Check 4: the gradient file's blake3, sequence and token counts are the receipt's.
    pub fn gradient_file(&mut self, grad: &Gradient) -> Result<bool, Error> {
        let r = self.receipt();
        let grad_hash = hash_of(self.inp.grad)?;
        let n_seq = r.sequences.len();
        let inner_steps = grad.file.metadata().get("inner_steps").cloned();
        let file_ok = grad_hash == r.grad
            && inner_steps == r.inner_steps.map(|h| h.to_string())
            && grad.meta.sequences == n_seq
            && Some(grad.meta.tokens) == n_seq.checked_mul(r.seq_len as u64);
        let finding = if file_ok {
            Finding::Pass(format!("{} ({} sequences)", &grad_hash[..16], n_seq))
        } else {
            let steps =
                |h: Option<String>| h.map(|h| format!(" / {h} inner steps")).unwrap_or_default();
            Finding::Fail(format!(
                "hash {} / {} sequences{}; the receipt says {} / {}{}",
                &grad_hash[..16],
                grad.meta.sequences,
                steps(inner_steps),
                &r.grad[..16.min(r.grad.len())],
                n_seq,
                steps(r.inner_steps.map(|h| h.to_string()))
            ))
        };
        Ok(self.record("gradient file", finding))
    }

    /// The gradient's values, when it has the model's layout (a file that is
    /// not this model's gradient cannot be checked further: None).
    pub fn gradient_values(&mut self, grad: &Gradient) -> Result<Option<Vec<f32>>, Error> {
        let model_file = TensorFile::open(self.inp.ckpt.dir.join(crate::model::MODEL_FILE))?;
        let readable = grad
            .file
            .check_same_layout(&model_file)
            .and_then(|()| grad.file.to_f32().map(|v| v.into_owned()));
        match readable {
            Ok(flat) => Ok(Some(flat)),
            Err(e) => {
                self.record("gradient layout", Finding::Fail(e.to_string()));
                Ok(None)
            }
        }
    }

    /// The sequences of each micro-batch the receipt lists.
    pub fn micro_batch_sequences(&self) -> Vec<Vec<u64>> {
        let r = self.receipt();
        r.micro_batches
            .iter()
            .map(|m| m.sequences.iter().collect())
            .collect()
    }

    /// The receipt's micro-batches list exactly its sequences, with one
    /// sketch of the receipt's size each.
    pub fn structure_ok(&self) -> bool {
        let r = self.receipt();
        let listed: Vec<u64> = self.micro_batch_sequences().concat();
        listed == r.sequences.iter().collect::<Vec<_>>()
            && self.inner_structure_ok()
            && r.sketch_k > 0
            && r.micro_batches.iter().all(|m| m.sketch.len() == r.sketch_k)
    }

    /// The sketcher of this receipt's model, shard and sketch size.
    pub fn sketcher(&self) -> Sketcher {
        let r = self.receipt();
        Sketcher::new(&r.model, &r.shard, r.sketch_k.max(1))
    }

    /// Check 5: the sequence-weighted sum of the micro-batch sketches is the
    /// sketch of the gradient file.
    pub fn linearity(&mut self, flat: &[f32]) -> bool {
        if !self.structure_ok() {
            let why = "the receipt's micro-batches do not list its sequences with one sketch each";
            return self.record("linearity", Finding::Fail(why.into()));
        }
        let r = self.receipt();
        let n_seq = r.sequences.len() as f64;
        let file_sketch = self.sketcher().sketch_cpu(flat);
        let mut sum = vec![0f64; r.sketch_k];
        for (m, s) in r.micro_batches.iter().zip(self.micro_batch_sequences()) {
            let w = s.len() as f64 / n_seq;
            sum.iter_mut().zip(&m.sketch).for_each(|(a, b)| *a += w * b);
        }
        let d = rel_distance(&sum, &file_sketch);
        self.measured.linearity = Some(d);
        let detail = format!(
            "Σ micro-batch sketches vs the file's sketch: {d:.2e} (tolerance {:.0e})",
            self.tol.linearity
        );
        let finding = if d <= self.tol.linearity {
            Finding::Pass(detail)
        } else {
            Finding::Fail(detail)
        };
        self.record("linearity", finding)
    }

    /// Check 7: what the miner sent in reduce rounds is its gradient, with the
    /// weight of its receipt (checked only when transcripts were given).
    pub fn reduce(&mut self, flat: &[f32]) {
        if self.inp.transcripts.is_empty() {
            return;
        }
        let n_seq = self.receipt().sequences.len();
        let sent = match self.inp.residual {
            None => std::borrow::Cow::Borrowed(flat),
            Some(path) => match self.with_residual(path, flat) {
                Some(sent) => std::borrow::Cow::Owned(sent),
                None => return,
            },
        };
        let found = check_reduce(self.inp, &sent, n_seq);
        let finding = if !found.failures.is_empty() {
            Finding::Fail(found.failures.join("; "))
        } else if found.seen == 0 {
            Finding::Fail(format!(
                "no trusted transcript records a contribution from '{}'",
                found.miner
            ))
        } else {
            Finding::Pass(format!(
                "its contributions to {} span(s) are its gradient",
                found.seen
            ))
        };
        self.record("reduce", finding);
        self.disputes = found.disputes;
        for note in found.ignored {
            self.record("transcript ignored", Finding::Pass(note));
        }
    }

    /// Error feedback (`reduce --residual`): what the miner sent is its
    /// gradient plus the residual it published before the round. The residual
    /// must fit the gradient, hold finite values, not come from this round,
    /// and be no larger (L2) than the gradient: a miner can bias what it
    /// sends by at most that much. Returns gradient + residual (f32, as
    /// reduce adds them), or None (a failed check).
    fn with_residual(&mut self, path: &Path, flat: &[f32]) -> Option<Vec<f32>> {
        let checked = TensorFile::open(path)
            .map_err(|e| e.to_string())
            .and_then(|f| {
                let values = f.flat_f32().map_err(|e| e.to_string())?;
                if values.len() != flat.len() {
                    return Err(format!(
                        "{} values, the gradient has {}",
                        values.len(),
                        flat.len()
                    ));
                }
                if let (Some(round), Ok(written)) = (self.inp.round, f.meta("round")) {
                    if written == round {
                        return Err(format!("written by this round ({round}), not before it"));
                    }
                }
                let (e, g) = (
                    crate::tensors::l2_norm(values),
                    crate::tensors::l2_norm(flat),
                );
                if !e.is_finite() || e > g {
                    return Err(format!("its norm {e:.3e} exceeds the gradient's {g:.3e}"));
                }
                Ok(flat.iter().zip(values).map(|(x, r)| x + r).collect())
            });
        match checked {
            Ok(sent) => {
                self.record(
                    "residual",
                    Finding::Pass("published before the round".into()),
                );
                Some(sent)
            }
            Err(why) => {
                self.record("residual", Finding::Fail(why));
                None
            }
        }
    }

    /// The verdict: it passes when every check passed.
    pub fn verdict(self, recomputed: Vec<usize>) -> Verdict {
        let r = self.inp.receipt;
        let pass = self.checks.iter().all(|c| c.pass);
        Verdict {
            miner: self
                .inp
                .miner
                .map(str::to_string)
                .or_else(|| r.miner.clone()),
            pubkey: r.pubkey.clone(),
            model: r.model.clone(),
            shard: r.shard.clone(),
            grad: r.grad.clone(),
            pass,
            checks: self.checks,
            sequences: if pass { r.sequences.len() } else { 0 },
            cost: recomputed.len() as f64 / r.micro_batches.len().max(1) as f64,
            recomputed_micro_batches: recomputed,
            micro_batches: r.micro_batches.len(),
            tolerances: self.tol,
            measured: self.measured,
            disputes: self.disputes,
            seconds: self.started.elapsed().as_secs_f64(),
        }
    }
}

/// The spec is the one the subnet assigns this miner: the validator's own
/// data repo, config and revision, and the rows `assign` gives for its seed,
/// epoch, uid and row count over the corpus as the validator reads it.
/// Returns why not, or None.
fn assignment_mismatch(spec: &DataSpec, exp: &Expected, corpus: &Corpus) -> Option<String> {
    if let Some(why) = spec_mismatch(spec, exp) {
        return Some(why);
    }
    let files = corpus.spec_files();
    let assigned = crate::data::assign(
        &exp.repo,
        &exp.config,
        &exp.revision,
        &files,
        &exp.assignment,
    );
    match assigned {
        Err(e) => Some(e.to_string()),
        Ok(rows) if rows != spec.rows || files != spec.files => Some(format!(
            "the spec lists rows {}, the assignment gives {rows}",
            spec.rows
        )),
        Ok(_) => None,
    }
}

/// The spec's repo, config, revision and assignment are the subnet's; checked
/// before the corpus is opened too, so a miner's spec never chooses what is
/// read. Returns why not, or None.
fn spec_mismatch(spec: &DataSpec, exp: &Expected) -> Option<String> {
    if (&spec.repo, &spec.config, &spec.revision) != (&exp.repo, &exp.config, &exp.revision) {
        return Some(format!(
            "the spec names {} {} at {}; the subnet's data is {} {} at {}",
            spec.repo, spec.config, spec.revision, exp.repo, exp.config, exp.revision
        ));
    }
    if spec.assignment.as_ref() != Some(&exp.assignment) {
        return Some(format!(
            "the spec's assignment is {:?}, this miner's is {:?}",
            spec.assignment, exp.assignment
        ));
    }
    None
}

/// A data error: the miner's (its spec does not fit the corpus: a failed
/// check) or the validator's own (the corpus could not be read: `Err`).
fn miners_data_fault(e: crate::data::Error) -> Result<Finding, Error> {
    use crate::data::Error as D;
    match e {
        D::Hub(_) | D::Io { .. } | D::Footer { .. } | D::Parquet { .. } | D::NoFiles(_) => {
            Err(Error::Data(e))
        }
        other => Ok(Finding::Fail(other.to_string())),
    }
}

/// Checks the shard's content against the spec's rows: a failed finding is
/// the miner's fault, `Err` the validator's.
fn shard_content(
    spec: &DataSpec,
    src: &Source,
    expected: Option<&Expected>,
    shard_hash: &str,
) -> Result<Finding, Error> {
    if let Some(why) = expected.and_then(|exp| spec_mismatch(spec, exp)) {
        return Ok(Finding::Fail(why));
    }
    let corpus = match Corpus::open(src, &crate::data::config_dir(&spec.config)) {
        Ok(c) => c,
        Err(e) => return miners_data_fault(e),
    };
    if let Some(why) = expected.and_then(|exp| assignment_mismatch(spec, exp, &corpus)) {
        return Ok(Finding::Fail(why));
    }
    if let Err(e) = corpus.check(spec) {
        return miners_data_fault(e);
    }
    let mut docs = Vec::new();
    if let Err(e) = corpus.fetch(src, &spec.rows, |row| {
        docs.push(row.text);
        Ok(())
    }) {
        return miners_data_fault(e);
    }
    let toks = crate::tokenizer::Tokenizer::gpt2().encode_docs(&docs)?;
    let want = crate::tokens::hash_of(&toks)?.to_hex().to_string();
    Ok(if want == shard_hash {
        Finding::Pass(format!(
            "{} = the tokenization of rows {}",
            &shard_hash[..16],
            spec.rows
        ))
    } else {
        Finding::Fail(format!(
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
        cost: 0.0,
        micro_batches: 0,
        tolerances: tolerances("cpu", "f32"),
        measured: Measured::default(),
        disputes: Vec::new(),
        seconds: 0.0,
    }
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
    let (trusted, ignored) = crate::reduce::transcript::trusted(inp.transcripts, inp.peers);
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
            let want = crate::reduce::contribution_hash(
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
            "ternary" => Wire::Ternary,
            _ => return Err(()),
        }))
    }
}

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
