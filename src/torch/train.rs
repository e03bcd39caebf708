//! One training step's gradient (`train-step`) and evaluation (`eval`).
//!
//! Sequence k of a shard is tokens [k·T, k·T+T+1): inputs are the first T,
//! targets the last T. The gradient is the mean over all the step's tokens,
//! accumulated in f32 over micro-batches (each micro-batch's mean loss is scaled
//! by its share of the sequences), so it equals the gradient of one big batch
//! and is linear in the sequences: the sequence-weighted mean of two halves'
//! gradients is the whole's — the property `reduce` relies on. The weights never
//! change here; `apply` steps the optimizer.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

use crate::gpt::{Gpt, Precision};
use dtrain::model::Checkpoint;
use dtrain::ranges::RangeList;
use dtrain::receipt::{MicroBatch, Receipt};
use dtrain::tensors::{GradMeta, TensorWriter};
use dtrain::tokens::Shard;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "the shard has {tokens} tokens: no sequence of length {seq_len} fits (need {seq_len} + 1)"
    )]
    ShardTooShort { tokens: usize, seq_len: usize },
    #[error("sequence {index} is out of range: the shard holds {available} sequences of length {seq_len}")]
    SequenceRange {
        index: u64,
        available: u64,
        seq_len: usize,
    },
    #[error("the sequence list names a sequence twice")]
    DuplicateSequence,
    #[error("no sequences selected")]
    NoSequences,
    #[error("seq-len {seq_len} exceeds the model's n_positions {max}")]
    SeqLen { seq_len: usize, max: usize },
    #[error("micro-batch must be at least 1")]
    MicroBatch,
    #[error("{steps} inner steps need at least {steps} sequences, the step has {sequences}")]
    InnerSteps { steps: usize, sequences: usize },
    #[error("inner step: {0}")]
    InnerOptim(#[from] dtrain::optim::Error),
    #[error("inner state: {0}")]
    InnerState(#[from] dtrain::inner::StateError),
    #[error("token {token} at position {at} is outside the model's vocabulary of {vocab} (a shard for another tokenizer?)")]
    OutOfVocab { token: u16, at: usize, vocab: usize },
    #[error("the loss is not finite ({0}); nothing was written")]
    NonFinite(f64),
    #[error("the gradient is not finite; nothing was written")]
    NonFiniteGrad,
    #[error(transparent)]
    Model(#[from] dtrain::model::Error),
    #[error(transparent)]
    Tensors(#[from] dtrain::tensors::Error),
    #[error("torch: {}", dtrain::panics::torch_message(&.0.to_string()))]
    Torch(#[from] tch::TchError),
    #[error("torch: {0}")]
    TorchPanic(String),
    #[error("the model does not fit in {device} memory: {msg}")]
    OutOfMemory { device: String, msg: String },
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

/// What to compute.
#[derive(Clone, Debug)]
pub struct StepOptions {
    pub seq_len: usize,
    pub micro_batch: usize,
    /// None: every whole sequence of the shard.
    pub sequences: Option<RangeList>,
    pub device: Device,
    pub precision: Precision,
    /// Projections per micro-batch sketch (0: no sketches).
    pub sketch_k: usize,
    /// The miner's name, recorded in the receipt.
    pub miner: Option<String>,
    /// The round this work is for, recorded in the receipt.
    pub round: Option<String>,
    /// DiLoCo: take this many inner optimizer steps and write the
    /// pseudo-gradient θ₀ − θ_H (None: one plain gradient).
    pub inner: Option<Inner>,
}

/// DiLoCo's inner loop: the shard's sequences in `steps` consecutive batches
/// of equal size, one inner optimizer step after each (the same arithmetic as
/// `apply`, with `optim`'s settings). The state after every `state_every`-th
/// step and after the last is written to `states` and committed to in the
/// receipt ([`dtrain::inner`]).
#[derive(Clone, Debug)]
pub struct Inner {
    pub steps: usize,
    pub optim: dtrain::optim::ApplyOptions,
    pub state_every: usize,
    /// The folder the states are written to.
    pub states: std::path::PathBuf,
    /// The optimizer state carried across rounds: read at the start when the
    /// file exists (else fresh), replaced by the last state at the end.
    pub carry: Option<std::path::PathBuf>,
}

/// The sequences a step covers, checked against the shard.
pub fn select_sequences(
    shard_tokens: usize,
    opts: &StepOptions,
    max_positions: usize,
) -> Result<Vec<u64>, Error> {
    if opts.seq_len > max_positions {
        return Err(Error::SeqLen {
            seq_len: opts.seq_len,
            max: max_positions,
        });
    }
    if opts.micro_batch == 0 {
        return Err(Error::MicroBatch);
    }
    if shard_tokens < opts.seq_len + 1 {
        return Err(Error::ShardTooShort {
            tokens: shard_tokens,
            seq_len: opts.seq_len,
        });
    }
    let available = ((shard_tokens - 1) / opts.seq_len) as u64;
    let list = opts
        .sequences
        .clone()
        .unwrap_or_else(|| RangeList::all(available));
    if list.is_empty() {
        return Err(Error::NoSequences);
    }
    if let Some(m) = list.max().filter(|&m| m >= available) {
        return Err(Error::SequenceRange {
            index: m,
            available,
            seq_len: opts.seq_len,
        });
    }
    if list.has_duplicates() {
        return Err(Error::DuplicateSequence);
    }
    Ok(list.iter().collect())
}

/// Inputs and targets (B, T) of the given sequences, on `device`.
fn batch(tokens: &[u16], seqs: &[u64], seq_len: usize, device: Device) -> (Tensor, Tensor) {
    let mut buf = Vec::with_capacity(seqs.len() * (seq_len + 1));
    for &k in seqs {
        let s = k as usize * seq_len;
        buf.extend(tokens[s..s + seq_len + 1].iter().map(|&t| t as i64));
    }
    let all = Tensor::from_slice(&buf)
        .view([seqs.len() as i64, seq_len as i64 + 1])
        .to_device(device);
    (
        all.narrow(1, 0, seq_len as i64),
        all.narrow(1, 1, seq_len as i64),
    )
}

pub use dtrain::tensors::{l2_norm, sum_sq};

/// A checkpoint's parameters as tensors on `device` (f32, requiring grad).
pub fn to_tensors(
    ckpt: &dtrain::model::Checkpoint,
    device: tch::Device,
) -> Result<Vec<Tensor>, Error> {
    let shapes = ckpt.config.param_shapes();
    (0..shapes.len())
        .map(|i| {
            let data = ckpt.param(i)?;
            let shape: Vec<i64> = shapes[i].iter().map(|&d| d as i64).collect();
            let t = Tensor::f_from_slice(&data)?
                .f_reshape(&shape)?
                .f_to_device(device)?;
            Ok(t.set_requires_grad(true))
        })
        .collect()
}

/// The loaded model and the micro-batch loop, shared by train-step, eval and verify.
pub struct Engine {
    pub gpt: Gpt,
    pub device: Device,
}

impl Engine {
    pub fn load(ckpt: &Checkpoint, device: Device, precision: Precision) -> Result<Self, Error> {
        let params = to_tensors(ckpt, device)?;
        Ok(Self {
            gpt: Gpt::new(ckpt.config.clone(), params, precision),
            device,
        })
    }

    /// Replaces the parameters' values with `flat` (file order, f32).
    pub fn set_params(&mut self, flat: &[f32]) -> Result<(), Error> {
        let values = Tensor::f_from_slice(flat)?.f_to_device(self.device)?;
        self.set_params_from(&values)
    }

    /// Replaces the parameters' values with `flat` (file order, f32, on any device).
    pub fn set_params_from(&mut self, flat: &Tensor) -> Result<(), Error> {
        let mut off = 0;
        for p in &mut self.gpt.params {
            let n = p.numel() as i64;
            let values = flat.f_narrow(0, off, n)?.f_view(p.size().as_slice())?;
            tch::no_grad(|| p.f_copy_(&values))?;
            off += n;
        }
        Ok(())
    }

    pub fn zero_grad(&mut self) {
        for p in &mut self.gpt.params {
            p.zero_grad();
        }
    }

    /// The parameters' current gradients as one flat f32 tensor, in file order.
    pub fn flat_grad(&self) -> Tensor {
        let parts: Vec<Tensor> = self
            .gpt
            .params
            .iter()
            .map(|p| p.grad().to_kind(Kind::Float).reshape([-1]))
            .collect();
        Tensor::cat(&parts, 0)
    }

    /// Forward and backward of one micro-batch from zero gradients: its mean
    /// loss, and its mean gradient times `scale`, flat.
    pub fn micro_batch(
        &mut self,
        tokens: &[u16],
        seqs: &[u64],
        seq_len: usize,
        scale: f64,
    ) -> (Tensor, Tensor) {
        self.zero_grad();
        let (x, y) = batch(tokens, seqs, seq_len, self.device);
        let loss = self.gpt.forward_backward(&x, &y, scale);
        (loss, self.flat_grad())
    }

    /// All micro-batches of `seqs`: per micro-batch (loss, sketch of its mean
    /// gradient), and the sequence-weighted sum of their gradients (flat, on the
    /// device). The sum adds the scaled micro-batch gradients in order, the
    /// same f32 additions autograd's accumulation would do.
    pub fn step(
        &mut self,
        tokens: &[u16],
        seqs: &[u64],
        opts: &StepOptions,
        sketcher: Option<&crate::sketch::DeviceSketcher>,
        bar: &indicatif::ProgressBar,
    ) -> (MicroBatchResults, Tensor) {
        let total = seqs.len() as f64;
        let mut acc: Option<Tensor> = None;
        let mut losses = Vec::new();
        let mut sketches = Vec::new();
        let started = Instant::now();
        let mut tokens_done = 0usize;
        for mb in seqs.chunks(opts.micro_batch) {
            let scale = mb.len() as f64 / total;
            let (loss, flat) = self.micro_batch(tokens, mb, opts.seq_len, scale);
            // left on the device: reading it here would stall the queue every micro-batch
            sketches.push(sketcher.map(|s| (s.sketch_on_device(&flat), scale)));
            match &mut acc {
                None => acc = Some(flat),
                Some(a) => {
                    let _ = a.g_add_(&flat);
                }
            }
            losses.push(loss);
            tokens_done += mb.len() * opts.seq_len;
            advance(bar, tokens_done, started);
        }
        let sketches = sketches.into_iter().map(|s| match s {
            Some((t, scale)) => crate::sketch::to_host(&t)
                .into_iter()
                .map(|v| v / scale)
                .collect(),
            None => Vec::new(),
        });
        let out = losses.into_iter().zip(sketches).collect();
        (out, acc.expect("at least one micro-batch"))
    }
}

/// Runs a compute section, turning libtorch panics (out of memory, …) into errors.
pub fn guarded<T>(device: Device, f: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
    match dtrain::panics::catch_torch(f) {
        Ok(r) => r,
        Err(dtrain::panics::TorchPanic(msg)) if dtrain::panics::is_oom(&msg) => {
            Err(Error::OutOfMemory {
                device: crate::device::kind_name(device).into(),
                msg,
            })
        }
        Err(dtrain::panics::TorchPanic(msg)) => Err(Error::TorchPanic(msg)),
    }
}

/// Memory high-water mark of the step: device bytes in use on CUDA, peak RSS on CPU.
pub fn peak_memory(device: Device) -> u64 {
    match device {
        Device::Cuda(i) => crate::device::cuda_mem_used(i).unwrap_or(0),
        _ => dtrain::panics::peak_rss_bytes(),
    }
}

/// Where a step's two outputs go: they are written together or not at all.
pub struct StepFiles<'a> {
    pub grad: &'a Path,
    pub receipt: &'a Path,
}

/// A whole `train-step`: hashes the shard file (the identity the receipt
/// records), computes the gradient into `files.grad`, signs the receipt with
/// `key` when given and writes it to `files.receipt`. Both are written
/// atomically, and a receipt that cannot be written takes its gradient with it.
pub fn train_step_to_files(
    ckpt: &Checkpoint,
    shard: &Shard,
    shard_path: &Path,
    opts: &StepOptions,
    files: &StepFiles,
    key: Option<&dtrain::keys::Key>,
) -> Result<Receipt, Error> {
    let io_err = |p: &Path| {
        let p = p.display().to_string();
        move |e| Error::Io(p, e)
    };
    let shard_hash = dtrain::fsio::hash_file(shard_path).map_err(io_err(shard_path))?;
    let mut receipt = train_step(ckpt, shard, &shard_hash.to_hex(), opts, files.grad)?;
    if let Some(k) = key {
        receipt.sign(k);
    }
    let written = dtrain::fsio::write_atomic(files.receipt, receipt.to_json().as_bytes());
    if let Err(e) = written {
        let _ = std::fs::remove_file(files.grad);
        return Err(io_err(files.receipt)(e));
    }
    if let Some((inner, carry)) = opts
        .inner
        .as_ref()
        .and_then(|i| Some((i, i.carry.as_ref()?)))
    {
        let last = dtrain::inner::state_path(&inner.states, inner.steps);
        let bytes = std::fs::read(&last).map_err(io_err(&last))?;
        dtrain::fsio::write_atomic(carry, &bytes).map_err(io_err(carry))?;
    }
    Ok(receipt)
}

/// Computes the gradient of `ckpt` on the shard's sequences and writes it to
/// `grad_out` (atomically); returns the receipt (not yet written).
pub fn train_step(
    ckpt: &Checkpoint,
    shard: &Shard,
    shard_hash: &str,
    opts: &StepOptions,
    grad_out: &Path,
) -> Result<Receipt, Error> {
    let t0 = Instant::now();
    let seqs = select_sequences(shard.len(), opts, ckpt.config.n_positions)?;
    check_vocab(shard, ckpt.config.vocab_size)?;
    guarded(opts.device, || {
        train_step_inner(ckpt, shard, shard_hash, opts, grad_out, &seqs, t0)
    })
}

fn train_step_inner(
    ckpt: &Checkpoint,
    shard: &Shard,
    shard_hash: &str,
    opts: &StepOptions,
    grad_out: &Path,
    seqs: &[u64],
    t0: Instant,
) -> Result<Receipt, Error> {
    let mut engine = Engine::load(ckpt, opts.device, opts.precision)?;
    let sketcher = dtrain::sketch::Sketcher::new(&ckpt.hash, shard_hash, opts.sketch_k);
    let dev_sketch = (opts.sketch_k > 0)
        .then(|| crate::sketch::on_device(&sketcher, ckpt.config.num_params(), opts.device));
    let bar = dtrain::progress::steps_bar(
        seqs.len().div_ceil(opts.micro_batch) as u64,
        "micro-batches",
    );
    let (seqs, batches, sum, claim) = match &opts.inner {
        None => {
            let (mbs, sum) = engine.step(shard.tokens(), seqs, opts, dev_sketch.as_ref(), &bar);
            (seqs.to_vec(), vec![(seqs.to_vec(), mbs)], sum, None)
        }
        Some(inner) => {
            let mut run = InnerRun {
                engine: &mut engine,
                tokens: shard.tokens(),
                opts,
                optim: &inner.optim,
                specs: &ckpt.specs(),
                sketcher: dev_sketch.as_ref(),
                bar: &bar,
            };
            let out = inner_loop(&mut run, ckpt, seqs, inner)?;
            (out.used, out.batches, out.pseudo, Some(out.claim))
        }
    };
    bar.finish_and_clear();
    let mut micro_batches = Vec::new();
    for (batch, mbs) in &batches {
        let losses: Vec<f64> = Tensor::stack(
            &mbs.iter().map(|m| m.0.shallow_clone()).collect::<Vec<_>>(),
            0,
        )
        .to_kind(Kind::Double)
        .to_device(Device::Cpu)
        .try_into()?;
        for ((mb, loss), (_, sketch)) in batch.chunks(opts.micro_batch).zip(losses).zip(mbs) {
            micro_batches.push(MicroBatch {
                sequences: RangeList::from_indices(mb.iter().copied()),
                loss,
                sketch: sketch.clone(),
            });
        }
    }
    let n = seqs.len() as f64;
    let mean: f64 = micro_batches
        .iter()
        .map(|m| m.loss * m.sequences.len() as f64 / n)
        .sum();
    if !mean.is_finite() {
        return Err(Error::NonFinite(mean));
    }

    let specs = ckpt.specs();
    let mut meta = BTreeMap::new();
    let tokens = seqs.len() as u64 * opts.seq_len as u64;
    GradMeta {
        model: ckpt.hash.clone(),
        sequences: seqs.len() as u64,
        tokens,
    }
    .insert_into(&mut meta);
    meta.insert("shard".into(), shard_hash.into());
    meta.insert("seq_len".into(), opts.seq_len.to_string());
    if let Some(inner) = &opts.inner {
        meta.insert("inner_steps".into(), inner.steps.to_string());
    }
    let mut w = TensorWriter::create(grad_out, &specs, &meta)?;
    let numel: usize = specs.iter().map(|s| s.numel()).sum();
    sum.to_device(Device::Cpu)
        .contiguous()
        .f_copy_data_u8(w.data_mut(), numel)?;
    let grad_norm = l2_norm(w.flat_f32_mut());
    if !grad_norm.is_finite() {
        return Err(Error::NonFiniteGrad);
    }
    w.commit()?;
    let grad = dtrain::fsio::hash_file(grad_out)
        .map_err(|e| Error::Io(grad_out.display().to_string(), e))?;

    Ok(Receipt {
        version: dtrain::receipt::VERSION,
        miner: opts.miner.clone(),
        round: opts.round.clone(),
        model: ckpt.hash.clone(),
        shard: shard_hash.to_string(),
        sequences: RangeList::from_indices(seqs.iter().copied()),
        seq_len: opts.seq_len,
        micro_batch: opts.micro_batch,
        micro_batches,
        loss: mean,
        tokens,
        grad: grad.to_hex().to_string(),
        grad_norm,
        inner_steps: opts.inner.as_ref().map(|i| i.steps),
        inner: claim,
        sketch_k: opts.sketch_k,
        device: crate::device::kind_name(opts.device).into(),
        precision: opts.precision.name().into(),
        seconds: t0.elapsed().as_secs_f64(),
        pubkey: None,
        signature: None,
    })
}

/// One batch's micro-batches, each its mean loss (a device scalar) and the sketch of its mean gradient.
pub type MicroBatchResults = Vec<(Tensor, Vec<f64>)>;

/// Per inner batch: its sequences and its micro-batches.
type InnerBatches = Vec<(Vec<u64>, MicroBatchResults)>;

/// The inner loop's state as it runs: parameters (flat, file order) and the
/// optimizer's (None before a fresh loop's first step).
pub struct LoopState {
    pub theta: Vec<f32>,
    pub memory: Option<dtrain::optim::MemoryState>,
}

/// What runs inner steps: shared by train-step's loop and verify's segments.
pub struct InnerRun<'a> {
    pub engine: &'a mut Engine,
    pub tokens: &'a [u16],
    pub opts: &'a StepOptions,
    pub optim: &'a dtrain::optim::ApplyOptions,
    pub specs: &'a [dtrain::tensors::TensorSpec],
    pub sketcher: Option<&'a crate::sketch::DeviceSketcher>,
    pub bar: &'a indicatif::ProgressBar,
}

impl InnerRun<'_> {
    /// One inner step per batch from `state`: the batch's gradient (as
    /// `train-step` computes it), then an optimizer step (as `apply` computes
    /// it; AdamW on CUDA stays on the device, [`crate::optim`]).
    /// `after_step(i, state)` runs after batch i; `state` is current there
    /// when `wants_state(i)` and after the last batch (on the host path,
    /// always). Returns each batch's micro-batches (loss, sketch).
    pub fn run(
        &mut self,
        batches: &[&[u64]],
        state: &mut LoopState,
        wants_state: impl Fn(usize) -> bool,
        mut after_step: impl FnMut(usize, &LoopState) -> Result<(), Error>,
    ) -> Result<Vec<MicroBatchResults>, Error> {
        self.engine.set_params(&state.theta)?;
        let mut on_device = crate::optim::steps_on_device(self.engine.device, self.optim)
            .then(|| crate::optim::DeviceAdamw::new(self.engine.device, self.specs, state))
            .transpose()?;
        let mut out = Vec::with_capacity(batches.len());
        for (i, batch) in batches.iter().enumerate() {
            let (mbs, sum) =
                self.engine
                    .step(self.tokens, batch, self.opts, self.sketcher, self.bar);
            match &mut on_device {
                Some(adamw) => {
                    adamw.step(&sum, self.optim)?;
                    adamw.load_into(self.engine)?;
                    if wants_state(i) || i + 1 == batches.len() {
                        adamw.read_back(self.specs, state)?;
                    }
                }
                None => {
                    let grad: Vec<f32> = sum.to_device(Device::Cpu).try_into()?;
                    let (theta, memory) = (&mut state.theta, &mut state.memory);
                    dtrain::optim::step_in_memory(self.specs, theta, &grad, memory, self.optim)?;
                    self.engine.set_params(&state.theta)?;
                }
            }
            out.push(mbs);
            after_step(i, state)?;
        }
        Ok(out)
    }
}

/// What the inner loop produced.
struct InnerOutcome {
    /// The sequences used (H equal batches: a remainder is left out).
    used: Vec<u64>,
    batches: InnerBatches,
    /// θ₀ − θ_H, flat, on the CPU.
    pseudo: Tensor,
    claim: dtrain::inner::InnerClaim,
}

/// DiLoCo's inner loop over the step's sequences in `inner.steps` batches of
/// equal size, publishing the states the receipt commits to.
fn inner_loop(
    run: &mut InnerRun,
    ckpt: &Checkpoint,
    seqs: &[u64],
    inner: &Inner,
) -> Result<InnerOutcome, Error> {
    let h = inner.steps;
    if h == 0 || seqs.len() < h {
        return Err(Error::InnerSteps {
            steps: h,
            sequences: seqs.len(),
        });
    }
    let per = seqs.len() / h;
    let used = &seqs[..per * h];
    run.bar
        .set_length((h * per.div_ceil(run.opts.micro_batch)) as u64);
    std::fs::create_dir_all(&inner.states)
        .map_err(|e| Error::Io(inner.states.display().to_string(), e))?;
    let mut theta = Vec::new();
    for i in 0..run.specs.len() {
        theta.extend_from_slice(&ckpt.param(i)?);
    }
    let theta0 = theta.clone();
    let optim = inner.optim.optim;
    let carried = match inner.carry.as_deref().filter(|p| p.exists()) {
        Some(path) => Some(dtrain::inner::open_state(path, run.specs, optim)?.0.memory),
        None => None,
    };
    let mut state = LoopState {
        theta,
        memory: carried,
    };
    let initial = match &state.memory {
        Some(m) => {
            let path = dtrain::inner::state_path(&inner.states, 0);
            Some(dtrain::inner::write_state(
                &path,
                run.specs,
                optim,
                (&theta0, m),
                0,
            )?)
        }
        None => None,
    };
    let publish_at = dtrain::inner::checkpoints(h, inner.state_every);
    let mut states = Vec::with_capacity(publish_at.len());
    let batches: Vec<&[u64]> = used.chunks(per).collect();
    let specs = run.specs;
    let wants_state = |i: usize| publish_at.contains(&(i + 1));
    let mbs = run.run(&batches, &mut state, wants_state, |i, s| {
        if wants_state(i) {
            let path = dtrain::inner::state_path(&inner.states, i + 1);
            let memory = s.memory.as_ref().expect("a step was taken");
            states.push(dtrain::inner::write_state(
                &path,
                specs,
                optim,
                (&s.theta, memory),
                i + 1,
            )?);
        }
        Ok(())
    })?;
    let pseudo: Vec<f32> = theta0
        .iter()
        .zip(&state.theta)
        .map(|(a, b)| a - b)
        .collect();
    Ok(InnerOutcome {
        used: used.to_vec(),
        batches: batches.iter().map(|b| b.to_vec()).zip(mbs).collect(),
        pseudo: Tensor::from_slice(&pseudo),
        claim: dtrain::inner::InnerClaim {
            optim: dtrain::inner::InnerOptim::of(&inner.optim),
            state_every: inner.state_every,
            initial,
            states,
        },
    })
}

/// Steady-state throughput of the micro-batch loop (the benchmark mode of
/// train-step): `warmup` untimed iterations, then `iters` timed ones.
#[derive(Debug, serde::Serialize)]
pub struct BenchResult {
    pub tokens_per_s: f64,
    pub ms_per_iter: f64,
    pub tokens_per_iter: u64,
    pub iters: usize,
    pub mfu: Option<f64>,
    pub peak_memory_bytes: u64,
    /// With `profile`: milliseconds per iteration in each phase (the device
    /// is synchronised between phases, so the total runs a little slower).
    pub phases_ms: Option<crate::gpt::PhaseTimes>,
}

/// How a benchmark runs.
pub struct BenchSettings {
    pub warmup: usize,
    pub iters: usize,
    /// The device's peak FLOP/s, for MFU.
    pub peak_flops: Option<f64>,
    /// Time the phases of each forward-backward.
    pub profile: bool,
}

pub fn bench(
    ckpt: &Checkpoint,
    shard: &Shard,
    opts: &StepOptions,
    settings: &BenchSettings,
) -> Result<BenchResult, Error> {
    let seqs = select_sequences(shard.len(), opts, ckpt.config.n_positions)?;
    guarded(opts.device, || {
        bench_inner(ckpt, shard, opts, &seqs, settings)
    })
}

fn bench_inner(
    ckpt: &Checkpoint,
    shard: &Shard,
    opts: &StepOptions,
    seqs: &[u64],
    settings: &BenchSettings,
) -> Result<BenchResult, Error> {
    let mut engine = Engine::load(ckpt, opts.device, opts.precision)?;
    let sketcher = dtrain::sketch::Sketcher::new(&ckpt.hash, "benchmark", opts.sketch_k);
    let dev_sketch = (opts.sketch_k > 0)
        .then(|| crate::sketch::on_device(&sketcher, ckpt.config.num_params(), opts.device));
    let run = |engine: &mut Engine| {
        let hidden = indicatif::ProgressBar::hidden();
        let (mbs, sum) = engine.step(shard.tokens(), seqs, opts, dev_sketch.as_ref(), &hidden);
        let _ = mbs.last().map(|t| t.0.double_value(&[]));
        drop(sum);
    };
    for _ in 0..settings.warmup {
        run(&mut engine);
    }
    if settings.profile {
        engine.gpt.profile = Some(crate::gpt::PhaseTimes::default());
    }
    crate::gpt::sync(opts.device);
    let t0 = Instant::now();
    for _ in 0..settings.iters {
        run(&mut engine);
    }
    crate::gpt::sync(opts.device);
    let iters = settings.iters.max(1) as f64;
    let dt = t0.elapsed().as_secs_f64() / iters;
    let tokens = seqs.len() as u64 * opts.seq_len as u64;
    let tps = tokens as f64 / dt;
    let per_iter_ms = |s: f64| s / iters * 1e3;
    Ok(BenchResult {
        tokens_per_s: tps,
        ms_per_iter: dt * 1e3,
        tokens_per_iter: tokens,
        iters: settings.iters,
        mfu: settings
            .peak_flops
            .map(|p| tps * ckpt.config.flops_per_token(opts.seq_len) / p),
        peak_memory_bytes: peak_memory(opts.device),
        phases_ms: engine.gpt.profile.map(|p| crate::gpt::PhaseTimes {
            trunk_forward: per_iter_ms(p.trunk_forward),
            head: per_iter_ms(p.head),
            trunk_backward: per_iter_ms(p.trunk_backward),
        }),
    })
}

/// Every token of the shard is inside the model's vocabulary: an index
/// beyond the embedding table is an error here, not a panic inside torch.
pub fn check_vocab(shard: &Shard, vocab: usize) -> Result<(), Error> {
    let tokens = shard.tokens();
    let max = tokens.par_iter().copied().max().unwrap_or(0);
    if (max as usize) < vocab {
        return Ok(());
    }
    let at = tokens
        .iter()
        .position(|&t| t as usize >= vocab)
        .unwrap_or(0);
    Err(Error::OutOfVocab {
        token: tokens[at],
        at,
        vocab,
    })
}

/// Mean loss over the selected sequences (no gradient); optionally the logits
/// of every position, written as f32 safetensors ("logits": [N, T, V]).
pub fn eval(
    ckpt: &Checkpoint,
    shard: &Shard,
    opts: &StepOptions,
    logits_out: Option<&Path>,
) -> Result<(f64, usize), Error> {
    let seqs = select_sequences(shard.len(), opts, ckpt.config.n_positions)?;
    check_vocab(shard, ckpt.config.vocab_size)?;
    let engine = Engine::load(ckpt, opts.device, opts.precision)?;
    let _guard = tch::no_grad_guard();
    let v = ckpt.config.vocab_size;
    let mut writer = match logits_out {
        Some(p) => {
            let spec = dtrain::tensors::TensorSpec::new(
                "logits",
                dtrain::tensors::DType::F32,
                &[seqs.len(), opts.seq_len, v],
            );
            Some(TensorWriter::create(p, &[spec], &BTreeMap::new())?)
        }
        None => None,
    };
    let mut sum = 0.0;
    let mut done = 0usize;
    let bar = dtrain::progress::steps_bar(
        seqs.len().div_ceil(opts.micro_batch) as u64,
        "eval micro-batches",
    );
    let started = Instant::now();
    for mb in seqs.chunks(opts.micro_batch) {
        let (x, y) = batch(shard.tokens(), mb, opts.seq_len, engine.device);
        let logits = engine.gpt.logits(&x);
        let loss = logits.cross_entropy_loss::<Tensor>(
            &y.reshape([-1]),
            None,
            tch::Reduction::Mean,
            -100,
            0.0,
        );
        sum += loss.double_value(&[]) * mb.len() as f64;
        if let Some(w) = writer.as_mut() {
            let n = mb.len() * opts.seq_len * v;
            let start = done * opts.seq_len * v * 4;
            logits
                .to_device(Device::Cpu)
                .contiguous()
                .f_copy_data_u8(&mut w.data_mut()[start..start + n * 4], n)?;
        }
        done += mb.len();
        advance(&bar, done * opts.seq_len, started);
    }
    if let Some(w) = writer {
        w.commit()?;
    }
    Ok((sum / seqs.len() as f64, seqs.len()))
}

/// One micro-batch done: the bar moves on and says the rate so far, "12,300
/// tokens/s" (nothing is formatted for a hidden bar).
fn advance(bar: &indicatif::ProgressBar, tokens_done: usize, since: Instant) {
    if !bar.is_hidden() {
        let rate = tokens_done as f64 / since.elapsed().as_secs_f64().max(1e-3);
        bar.set_message(format!("{} tokens/s", indicatif::HumanCount(rate as u64)));
    }
    bar.inc(1);
}
