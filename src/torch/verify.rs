//! `verify`'s recomputation: the checks that need the model (check 6 of
//! [`dtrain::verify`]), run between that module's checks in their order.
//!
//! Every micro-batch, or K chosen with the validator's own randomness
//! (`--sample K`), is recomputed: its loss and sketch must match; a full
//! recomputation also compares the whole gradient (per-tensor cosine and
//! relative L2).

use tch::{Device, Kind};

use crate::gpt::Precision;
use crate::train::{Engine, StepOptions};
use dtrain::sketch::rel_distance;
use dtrain::tokens::Shard;
use dtrain::verify::{rel, Finding, Gradient, Inputs, Verdict, Verification};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Verify(#[from] dtrain::verify::Error),
    #[error(transparent)]
    Train(#[from] crate::train::Error),
    #[error(transparent)]
    Tokens(#[from] dtrain::tokens::Error),
    #[error("cannot read the recomputed gradient: {0}")]
    Torch(#[from] tch::TchError),
    #[error(transparent)]
    Model(#[from] dtrain::model::Error),
}

/// Runs every check on `device`. A defect in what the miner published is a
/// failed check in the verdict; `Err` is only for the validator's own inputs
/// (model, corpus, device).
pub fn verify(inp: &Inputs, device: Device) -> Result<Verdict, Error> {
    let mut v = Verification::new(inp, crate::device::kind_name(device));
    // nothing in a receipt that is not the miner's is worth checking
    if !v.signature() || !v.receipt_claims() {
        return Ok(v.verdict(Vec::new()));
    }
    let Some(grad) = v.open_gradient() else {
        return Ok(v.verdict(Vec::new()));
    };
    let model_ok = v.model(&grad);
    let shard = Shard::open(inp.shard)?;
    let shard_ok = v.shard()?;
    v.gradient_file(&grad)?;
    let Some(flat) = v.gradient_values(&grad)? else {
        return Ok(v.verdict(Vec::new()));
    };
    let sound = model_ok && shard_ok && v.structure_ok();
    if inp.inner.is_some() {
        let recomputed = diloco(&mut v, &shard, &flat, sound, device)?;
        v.reduce(&flat);
        return Ok(v.verdict(recomputed));
    }
    v.linearity(&flat);
    // skipped when the inputs already disagree: it would be meaningless
    let recomputed = if sound {
        match recompute(&mut v, &shard, &grad, &flat, device)? {
            Some(recomputed) => recomputed,
            None => return Ok(v.verdict(Vec::new())),
        }
    } else {
        let why = "skipped: the model, shard or receipt structure already failed";
        v.record("recomputation", Finding::Fail(why.into()));
        Vec::new()
    };
    v.reduce(&flat);
    Ok(v.verdict(recomputed))
}

/// DiLoCo's checks: where the loop starts, the pseudo-gradient against the
/// last state, then the sampled segments (skipped when the inputs already
/// disagree). Returns the recomputed micro-batches.
fn diloco(
    v: &mut Verification,
    shard: &Shard,
    flat: &[f32],
    sound: bool,
    device: Device,
) -> Result<Vec<usize>, Error> {
    let start_ok = v.inner_state()?;
    v.pseudo_gradient(flat)?;
    if !(sound && start_ok) {
        let why = "skipped: the model, shard, receipt structure or inner state already failed";
        v.record("recomputation", Finding::Fail(why.into()));
        return Ok(Vec::new());
    }
    Ok(recompute_segments(v, shard, device)?.unwrap_or_default())
}

/// The step options that recompute a receipt's micro-batches, or why its
/// sequences do not fit the shard (a failed check).
fn recompute_options(
    v: &mut Verification,
    shard: &Shard,
    device: Device,
) -> Option<(StepOptions, usize)> {
    let (r, ckpt) = (v.inp.receipt, v.inp.ckpt);
    let precision = if r.precision == "bf16" {
        Precision::Bf16
    } else {
        Precision::F32
    };
    let opts = StepOptions {
        seq_len: r.seq_len,
        micro_batch: r.micro_batch,
        sequences: Some(r.sequences.clone()),
        device,
        precision,
        sketch_k: r.sketch_k,
        miner: None,
        round: None,
        inner: None,
    };
    let seqs = crate::train::select_sequences(shard.len(), &opts, ckpt.config.n_positions)
        .and_then(|s| crate::train::check_vocab(shard, ckpt.config.vocab_size).map(|()| s));
    match seqs {
        Ok(s) => Some((opts, s.len())),
        Err(e) => {
            let why = format!("the receipt's sequences do not fit the shard: {e}");
            v.record("recomputation", Finding::Fail(why));
            None
        }
    }
}

/// DiLoCo's recomputation: each chosen segment runs from its published
/// start state through its inner steps; every micro-batch's loss and sketch
/// must match the receipt's, and the end state the published one. Returns
/// the recomputed micro-batches, or None when a published state failed.
fn recompute_segments(
    v: &mut Verification,
    shard: &Shard,
    device: Device,
) -> Result<Option<Vec<usize>>, Error> {
    let Some((opts, _)) = recompute_options(v, shard, device) else {
        return Ok(None);
    };
    let (r, ckpt) = (v.inp.receipt, v.inp.ckpt);
    let Some(claim) = r.inner.as_ref() else {
        return Ok(None);
    };
    let optim = claim.optim.options();
    let specs = ckpt.specs();
    let sketcher = crate::sketch::on_device(&v.sketcher(), ckpt.config.num_params(), device);
    let mut engine = crate::train::guarded(device, || Engine::load(ckpt, device, opts.precision))?;
    let batches = v.inner_batches();
    let per_step = v.micro_batches_per_step();
    let segments = v.chosen_segments();
    let mut dev = Deviations::default();
    let mut chosen = Vec::new();
    let mut worst_segment = 0f64;
    let mut bad_segment = None;
    let bar = dtrain::progress::count_bar(
        segments.iter().map(|s| s.len()).sum::<usize>() as u64,
        "recomputing inner steps",
    );
    for seg in &segments {
        let Some(start) = v.segment_start(seg)? else {
            return Ok(None);
        };
        let mut state = crate::train::LoopState {
            theta: start.theta.clone(),
            memory: start.memory,
        };
        let hidden = indicatif::ProgressBar::hidden();
        let mut run = crate::train::InnerRun {
            engine: &mut engine,
            tokens: shard.tokens(),
            opts: &opts,
            optim: &optim,
            specs: &specs,
            sketcher: Some(&sketcher),
            bar: &hidden,
        };
        let refs: Vec<&[u64]> = batches[seg.clone()].iter().map(Vec::as_slice).collect();
        let steps = crate::train::guarded(device, || {
            run.run(
                &refs,
                &mut state,
                |_| false,
                |_, _| {
                    bar.inc(1);
                    Ok(())
                },
            )
        })?;
        for (k, (loss, sketch)) in steps.into_iter().flatten().enumerate() {
            let i = seg.start * per_step + k;
            dev.compare(v, i, loss.double_value(&[]), &sketch);
            chosen.push(i);
        }
        let memory = state.memory.as_ref().expect("a segment takes a step");
        let Some(d) = v.segment_end(seg, &start.theta, (&state.theta, memory)) else {
            return Ok(None);
        };
        worst_segment = worst_segment.max(d);
        if d > v.tol.segment && bad_segment.is_none() {
            bad_segment = Some((seg.clone(), d));
        }
    }
    bar.finish_and_clear();
    v.measured.segment = Some(worst_segment);
    let all = v.segment_count();
    record_segments(v, &dev, (segments.len(), all), bad_segment);
    Ok(Some(chosen))
}

/// Records the segment recomputation's verdict line.
fn record_segments(
    v: &mut Verification,
    dev: &Deviations,
    (chosen, all): (usize, usize),
    bad_segment: Option<(std::ops::Range<usize>, f64)>,
) {
    v.measured.loss = Some(dev.worst_loss);
    v.measured.sketch = Some(dev.worst_sketch);
    let r = v.inp.receipt;
    let finding = match (dev.first_bad, bad_segment) {
        (Some((i, dl, ds)), _) => Finding::Fail(format!(
            "micro-batch {i} ({}) does not match: loss {dl:.2e}, sketch {ds:.2e} off",
            r.micro_batches[i].sequences
        )),
        (None, Some((seg, d))) => Finding::Fail(format!(
            "inner steps {}..{} do not end in the published state: {d:.2e} off (tolerance {:.0e})",
            seg.start, seg.end, v.tol.segment
        )),
        (None, None) => Finding::Pass(format!(
            "{chosen} of {all} segments: worst loss {:.1e}, sketch {:.1e}, end state {:.1e} (tolerances {:.0e}, {:.0e}, {:.0e})",
            dev.worst_loss,
            dev.worst_sketch,
            v.measured.segment.unwrap_or(0.0),
            v.tol.loss,
            v.tol.sketch,
            v.tol.segment
        )),
    };
    v.record("recomputation", finding);
}

/// The worst deviations of the recomputed micro-batches.
#[derive(Default)]
struct Deviations {
    worst_loss: f64,
    worst_sketch: f64,
    /// The first micro-batch out of tolerance: index, loss and sketch deviation.
    first_bad: Option<(usize, f64, f64)>,
}

impl Deviations {
    /// Compares recomputed micro-batch `i` (its loss and mean-gradient
    /// sketch) with the receipt's.
    fn compare(&mut self, v: &Verification, i: usize, loss: f64, sketch: &[f64]) {
        let claimed = &v.inp.receipt.micro_batches[i];
        let dl = rel(loss, claimed.loss);
        let ds = rel_distance(&claimed.sketch, sketch);
        self.worst_loss = self.worst_loss.max(dl);
        self.worst_sketch = self.worst_sketch.max(ds);
        if (dl > v.tol.loss || ds > v.tol.sketch) && self.first_bad.is_none() {
            self.first_bad = Some((i, dl, ds));
        }
    }
}

/// Check 6: recomputes the chosen micro-batches (and, when all, the whole
/// gradient). Returns their indices, or None when the receipt's sequences do
/// not fit the shard (a failed check: nothing further is meaningful).
fn recompute(
    v: &mut Verification,
    shard: &Shard,
    grad: &Gradient,
    flat: &[f32],
    device: Device,
) -> Result<Option<Vec<usize>>, Error> {
    let Some((opts, n_seqs)) = recompute_options(v, shard, device) else {
        return Ok(None);
    };
    let (r, ckpt) = (v.inp.receipt, v.inp.ckpt);
    let precision = opts.precision;
    let sketcher = crate::sketch::on_device(&v.sketcher(), ckpt.config.num_params(), device);
    let mut engine = crate::train::guarded(device, || Engine::load(ckpt, device, precision))?;
    let chosen: Vec<usize> = match v.inp.sample {
        Some(k) if k < r.micro_batches.len() => {
            dtrain::verify::pick(r.micro_batches.len(), k.max(1))
        }
        _ => (0..r.micro_batches.len()).collect(),
    };
    let full = chosen.len() == r.micro_batches.len();
    let mb_seqs = v.micro_batch_sequences();
    let mut dev = Deviations::default();
    let mut sum: Option<tch::Tensor> = None;
    let bar = dtrain::progress::count_bar(chosen.len() as u64, "recomputing micro-batches");
    for &i in &chosen {
        let mb = &mb_seqs[i];
        let scale = if full {
            mb.len() as f64 / n_seqs as f64
        } else {
            1.0
        };
        let (loss, flatg) = crate::train::guarded(device, || {
            Ok(engine.micro_batch(shard.tokens(), mb, r.seq_len, scale))
        })?;
        let sketch: Vec<f64> = sketcher
            .sketch(&flatg)
            .into_iter()
            .map(|x| x / scale)
            .collect();
        dev.compare(v, i, loss.double_value(&[]), &sketch);
        if full {
            sum = Some(match sum {
                None => flatg,
                Some(a) => a + flatg,
            });
        }
        bar.inc(1);
    }
    record_micro_batches(v, &dev, &chosen);
    if let Some(sum) = sum {
        let mine = Vec::<f32>::try_from(sum.to_kind(Kind::Float).to_device(Device::Cpu))?;
        whole_gradient(v, grad, flat, &mine);
    }
    Ok(Some(chosen))
}

/// Records the micro-batch recomputation's verdict line.
fn record_micro_batches(v: &mut Verification, dev: &Deviations, chosen: &[usize]) {
    let r = v.inp.receipt;
    v.measured.loss = Some(dev.worst_loss);
    v.measured.sketch = Some(dev.worst_sketch);
    let what = if chosen.len() == r.micro_batches.len() {
        "all".to_string()
    } else {
        format!("{} sampled of {}", chosen.len(), r.micro_batches.len())
    };
    let finding = match dev.first_bad {
        None => Finding::Pass(format!(
            "{what} micro-batches: worst loss {:.1e}, worst sketch {:.1e} (tolerances {:.0e}, {:.0e})",
            dev.worst_loss, dev.worst_sketch, v.tol.loss, v.tol.sketch
        )),
        Some((i, dl, ds)) => Finding::Fail(format!(
            "micro-batch {i} ({}) does not match: loss {dl:.2e}, sketch {ds:.2e} off",
            r.micro_batches[i].sequences
        )),
    };
    v.record("recomputation", finding);
}

/// Compares the recomputed whole gradient `mine` with the file's `flat`:
/// relative L2 overall and per tensor, and the smallest cosine.
fn whole_gradient(v: &mut Verification, grad: &Gradient, flat: &[f32], mine: &[f32]) {
    let (mut worst_t, mut worst_name, mut min_cos) = (0f64, String::new(), 1f64);
    let mut off = 0;
    for e in grad.file.entries() {
        let n = e.spec.numel();
        let d = Distance::of(&flat[off..off + n], &mine[off..off + n]);
        if d.relative() > worst_t {
            worst_t = d.relative();
            worst_name = e.spec.name.clone();
        }
        min_cos = min_cos.min(d.cosine());
        off += n;
    }
    let global = Distance::of(flat, mine).relative();
    v.measured.grad = Some(global);
    v.measured.worst_tensor = Some(worst_t);
    let tol = v.tol.grad;
    let detail = format!("relative L2 {global:.1e} (tolerance {tol:.0e}); worst tensor {worst_name} {worst_t:.1e}; min cosine {min_cos:.6}");
    // small tensors (biases) carry more relative rounding: 10x per tensor
    let finding = if global <= tol && worst_t <= 10.0 * tol {
        Finding::Pass(detail)
    } else {
        Finding::Fail(detail)
    };
    v.record("whole gradient", finding);
}

/// Sums of squares between the miner's values `a` and the recomputed `b`.
struct Distance {
    diff: f64,
    a: f64,
    b: f64,
    dot: f64,
}

impl Distance {
    fn of(a: &[f32], b: &[f32]) -> Self {
        let mut d = Distance {
            diff: 0.0,
            a: 0.0,
            b: 0.0,
            dot: 0.0,
        };
        for (&x, &y) in a.iter().zip(b) {
            let (x, y) = (x as f64, y as f64);
            d.diff += (x - y).powi(2);
            d.a += x * x;
            d.b += y * y;
            d.dot += x * y;
        }
        d
    }

    /// ‖a − b‖ / ‖b‖.
    fn relative(&self) -> f64 {
        self.diff.sqrt() / self.b.sqrt().max(1e-30)
    }

    fn cosine(&self) -> f64 {
        if self.a > 0.0 && self.b > 0.0 {
            self.dot / (self.a.sqrt() * self.b.sqrt())
        } else {
            1.0
        }
    }
}
