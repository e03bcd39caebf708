//! `apply`: AdamW, LAMB and Nesterov-momentum SGD steps on memory-mapped
//! checkpoints (Nesterov is DiLoCo's outer step: its gradient is the round's
//! averaged pseudo-gradient).
//!
//! Every miner that applies the same averaged gradient to the same checkpoint
//! must end with the same model hash. So the optimizer is plain Rust on f32
//! slices: each element's update is a fixed sequence of IEEE operations, and the
//! per-tensor norms LAMB and clipping need are summed in f64 over fixed blocks in
//! a fixed order. The result does not depend on thread count or libtorch's
//! kernels. Weights, moments and the gradient stay memory-mapped; the new
//! checkpoint is written through mappings into a temporary folder and swapped in.
//!
//! Semantics follow `torch.optim.AdamW`, `torch_optimizer.Lamb` (no
//! debiasing, trust ratio ‖w‖ clamped to 10 over ‖adam step + wd·w‖) and
//! `torch.optim.SGD(nesterov=True)` (dampening 0; the first step's buffer is
//! the gradient; weight decay is added to the gradient, L2 style); weight
//! decay applies to ≥2-D parameters only; gradient clipping is
//! `clip_grad_norm_`'s (scale by max/(‖g‖+1e-6) when ‖g‖ exceeds max).

use std::collections::BTreeMap;
use std::path::Path;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::model::{self, Checkpoint, MODEL_FILE, OPTIMIZER_FILE, PROVENANCE_FILE};
use crate::tensors::sum_sq;
use crate::tensors::{DType, GradMeta, TensorFile, TensorSpec, TensorWriter};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the gradient was computed on model {grad}, but --model is {model}")]
    WrongModel { grad: String, model: String },
    #[error("the gradient contains NaN or Inf; nothing was written")]
    NonFinite,
    #[error(
        "optimizer state in {dir} belongs to model {state}, not to its model.safetensors ({model})"
    )]
    StaleState {
        dir: String,
        state: String,
        model: String,
    },
    #[error("optimizer state in {dir} is {state}, but --optim is {wanted}")]
    OtherOptimizer {
        dir: String,
        state: String,
        wanted: String,
    },
    #[error("{0}")]
    Schedule(String),
    #[error(transparent)]
    Model(#[from] model::Error),
    #[error(transparent)]
    Tensors(#[from] crate::tensors::Error),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Optim {
    Adamw,
    Lamb,
    Nesterov,
}

impl Optim {
    pub fn name(self) -> &'static str {
        match self {
            Optim::Adamw => "adamw",
            Optim::Lamb => "lamb",
            Optim::Nesterov => "nesterov",
        }
    }

    /// The optimizer state kept per parameter, as tensor name prefixes.
    pub fn state_names(self) -> &'static [&'static str] {
        match self {
            Optim::Adamw | Optim::Lamb => &["exp_avg", "exp_avg_sq"],
            Optim::Nesterov => &["momentum_buffer"],
        }
    }
}

/// Learning-rate schedule over global epochs.
#[derive(Clone, Debug, PartialEq)]
pub enum Schedule {
    Constant,
    /// Linear warm-up over `warmup` epochs, then cosine to 10% of the peak at `total`.
    WarmupCosine {
        warmup: u64,
        total: u64,
    },
}

impl Schedule {
    /// The learning rate at `epoch` (0-based) for peak `lr`.
    pub fn lr(&self, lr: f64, epoch: u64) -> f64 {
        match *self {
            Schedule::Constant => lr,
            Schedule::WarmupCosine { warmup, total } => {
                let min = 0.1 * lr;
                if epoch < warmup {
                    lr * (epoch + 1) as f64 / warmup as f64
                } else if epoch >= total {
                    min
                } else {
                    let p = (epoch - warmup) as f64 / (total - warmup).max(1) as f64;
                    min + 0.5 * (lr - min) * (1.0 + (std::f64::consts::PI * p).cos())
                }
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct ApplyOptions {
    pub optim: Optim,
    pub lr: f64,
    pub schedule: Schedule,
    /// The global epoch the schedule is evaluated at (default: the step count).
    pub epoch: Option<u64>,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Nesterov's momentum.
    pub momentum: f64,
    /// Max global gradient norm (None: no clipping).
    pub clip: Option<f64>,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        Self {
            optim: Optim::Lamb,
            lr: 1e-3,
            schedule: Schedule::Constant,
            epoch: None,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            momentum: 0.9,
            clip: Some(1.0),
        }
    }
}

/// What one apply did (dtrain.json in the new checkpoint).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Provenance {
    pub step: u64,
    pub epoch: u64,
    pub optim: Optim,
    pub lr: f64,
    pub parent: String,
    pub grad: String,
    pub grad_norm: f64,
    pub clip_scale: f64,
    pub model: String,
}

const BLOCK: usize = 1 << 16;

/// The optimizer state file's layout: each state name for every parameter.
pub fn state_specs(optim: Optim, specs: &[TensorSpec]) -> Vec<TensorSpec> {
    optim
        .state_names()
        .iter()
        .flat_map(|state| {
            specs
                .iter()
                .map(move |s| TensorSpec::new(format!("{state}.{}", s.name), DType::F32, &s.shape))
        })
        .collect()
}

/// Applies one optimizer step: `ckpt` + averaged gradient `grad` → new checkpoint at `dest`.
pub fn apply(
    ckpt: &Checkpoint,
    grad: &TensorFile,
    opts: &ApplyOptions,
    dest: &Path,
) -> Result<Provenance, Error> {
    let gmeta = GradMeta::read(grad)?;
    if gmeta.model != ckpt.hash {
        return Err(Error::WrongModel {
            grad: gmeta.model,
            model: ckpt.hash.clone(),
        });
    }
    let specs = ckpt.specs();
    crate::tensors::check_layout(&specs, &grad.specs()).map_err(|what| {
        crate::tensors::Error::Layout {
            path: grad.path().to_path_buf(),
            other: ckpt.dir.join(MODEL_FILE).display().to_string(),
            what: Box::new(what),
        }
    })?;
    let g_all = grad.to_f32()?;
    let gnorm = sum_sq(&g_all).sqrt();
    if !gnorm.is_finite() {
        return Err(Error::NonFinite);
    }
    let clip_scale = clip_scale(opts.clip, gnorm);

    // previous optimizer state, if any
    let state_path = ckpt.dir.join(OPTIMIZER_FILE);
    let state = if state_path.exists() {
        let f = TensorFile::open(&state_path)?;
        let owner = f.meta("model")?.to_string();
        if owner != ckpt.hash {
            return Err(Error::StaleState {
                dir: ckpt.dir.display().to_string(),
                state: owner,
                model: ckpt.hash.clone(),
            });
        }
        let name = f.meta("optim")?.to_string();
        if name != opts.optim.name() {
            return Err(Error::OtherOptimizer {
                dir: ckpt.dir.display().to_string(),
                state: name,
                wanted: opts.optim.name().into(),
            });
        }
        crate::tensors::check_layout(&state_specs(opts.optim, &specs), &f.specs()).map_err(
            |what| crate::tensors::Error::Layout {
                path: state_path.clone(),
                other: "the model".into(),
                what: Box::new(what),
            },
        )?;
        Some(f)
    } else {
        None
    };
    let step = match &state {
        Some(f) => f.meta_u64("step")? + 1,
        None => 1,
    };
    let epoch = opts.epoch.unwrap_or(step - 1);
    let lr = opts.schedule.lr(opts.lr, epoch);

    let dir = crate::fsio::AtomicDir::create(dest)
        .map_err(|e| Error::Io(dest.display().to_string(), e))?;
    model::write_config(dir.path(), &ckpt.config)?;
    let model_path = dir.path().join(MODEL_FILE);
    let mut wm = TensorWriter::create(&model_path, &specs, &model::model_metadata())?;

    // per state name, per parameter
    let names = opts.optim.state_names();
    let mut new_state: Vec<Vec<Vec<f32>>> = vec![Vec::with_capacity(specs.len()); names.len()];
    let mut goff = 0;
    for (i, s) in specs.iter().enumerate() {
        let p = ckpt.param(i)?;
        let g = &g_all[goff..goff + s.numel()];
        let out = &mut wm.flat_f32_mut()[goff..goff + s.numel()];
        goff += s.numel();
        let old: Vec<Option<std::borrow::Cow<[f32]>>> = names
            .iter()
            .map(|n| {
                state
                    .as_ref()
                    .map(|f| f.tensor_f32(&format!("{n}.{}", s.name)))
                    .transpose()
            })
            .collect::<Result<_, _>>()?;
        let new = step_tensor(s, (&p, g), clip_scale, &old, opts, (lr, step), out);
        for (k, v) in new.into_iter().enumerate() {
            new_state[k].push(v);
        }
    }
    if !wm.flat_f32_mut().iter().all(|x| x.is_finite()) {
        return Err(Error::NonFinite);
    }
    wm.commit()?;
    let new_hash = crate::fsio::hash_file(&model_path)
        .map_err(|e| Error::Io(model_path.display().to_string(), e))?
        .to_hex()
        .to_string();

    let mut meta = BTreeMap::new();
    meta.insert("model".to_string(), new_hash.clone());
    meta.insert("optim".to_string(), opts.optim.name().to_string());
    meta.insert("step".to_string(), step.to_string());
    let mspecs = state_specs(opts.optim, &specs);
    let data: Vec<&[f32]> = new_state.iter().flatten().map(Vec::as_slice).collect();
    crate::tensors::write_f32(dir.path().join(OPTIMIZER_FILE), &mspecs, &data, &meta)?;

    let grad_hash = crate::fsio::hash_file(grad.path())
        .map_err(|e| Error::Io(grad.path().display().to_string(), e))?;
    let prov = Provenance {
        step,
        epoch,
        optim: opts.optim,
        lr,
        parent: ckpt.hash.clone(),
        grad: grad_hash.to_hex().to_string(),
        grad_norm: gnorm,
        clip_scale,
        model: new_hash,
    };
    let pjson = serde_json::to_string_pretty(&prov).expect("json") + "\n";
    crate::fsio::write_atomic(dir.path().join(PROVENANCE_FILE), pjson.as_bytes())
        .map_err(|e| Error::Io(PROVENANCE_FILE.into(), e))?;
    dir.commit()
        .map_err(|e| Error::Io(dest.display().to_string(), e))?;
    Ok(prov)
}

/// An optimizer's state held in memory (train-step's inner loop): the step
/// count and, per state name, each parameter's tensor.
pub struct MemoryState {
    pub step: u64,
    state: Vec<Vec<Vec<f32>>>,
}

impl MemoryState {
    /// A state from its tensors in [`state_specs`] order (each state name,
    /// then each parameter), after `step` optimizer steps.
    pub fn from_tensors(optim: Optim, n_params: usize, step: u64, tensors: Vec<Vec<f32>>) -> Self {
        let names = optim.state_names().len();
        assert_eq!(
            tensors.len(),
            names * n_params,
            "one tensor per state and parameter"
        );
        let mut it = tensors.into_iter();
        let state = (0..names)
            .map(|_| it.by_ref().take(n_params).collect())
            .collect();
        MemoryState { step, state }
    }

    /// The tensors in [`state_specs`] order.
    pub fn tensors(&self) -> Vec<&[f32]> {
        self.state.iter().flatten().map(Vec::as_slice).collect()
    }
}

/// What an in-memory step did.
#[derive(Clone, Copy, Debug)]
pub struct StepInfo {
    pub grad_norm: f64,
    pub clip_scale: f64,
    pub lr: f64,
}

/// One optimizer step on parameters held in memory: `params` (flat, in the
/// order and shapes of `specs`) is updated in place with the gradient `grad`
/// (flat, same layout). The arithmetic is [`apply`]'s, element for element,
/// so H steps here equal H `apply`s chained through checkpoint files.
/// `state` starts as None (a fresh optimizer) and carries the moments.
pub fn step_in_memory(
    specs: &[TensorSpec],
    params: &mut [f32],
    grad: &[f32],
    state: &mut Option<MemoryState>,
    opts: &ApplyOptions,
) -> Result<StepInfo, Error> {
    let gnorm = sum_sq(grad).sqrt();
    if !gnorm.is_finite() {
        return Err(Error::NonFinite);
    }
    let clip_scale = clip_scale(opts.clip, gnorm);
    let step = state.as_ref().map_or(1, |s| s.step + 1);
    let lr = opts.schedule.lr(opts.lr, opts.epoch.unwrap_or(step - 1));
    let names = opts.optim.state_names();
    let mut new_state: Vec<Vec<Vec<f32>>> = vec![Vec::with_capacity(specs.len()); names.len()];
    let mut off = 0;
    for (i, s) in specs.iter().enumerate() {
        let n = s.numel();
        let old: Vec<Option<std::borrow::Cow<[f32]>>> = (0..names.len())
            .map(|k| {
                state
                    .as_ref()
                    .map(|st| std::borrow::Cow::Borrowed(&st.state[k][i][..]))
            })
            .collect();
        // the step reads the old values while it writes the new ones
        let p = params[off..off + n].to_vec();
        let g = &grad[off..off + n];
        let out = &mut params[off..off + n];
        let new = step_tensor(s, (&p, g), clip_scale, &old, opts, (lr, step), out);
        for (k, v) in new.into_iter().enumerate() {
            new_state[k].push(v);
        }
        off += n;
    }
    if !params.iter().all(|x| x.is_finite()) {
        return Err(Error::NonFinite);
    }
    *state = Some(MemoryState {
        step,
        state: new_state,
    });
    Ok(StepInfo {
        grad_norm: gnorm,
        clip_scale,
        lr,
    })
}

/// `clip_grad_norm_`'s factor: max/(‖g‖+1e-6) when the norm exceeds max.
pub fn clip_scale(clip: Option<f64>, gnorm: f64) -> f64 {
    match clip {
        Some(max) if gnorm > max => max / (gnorm + 1e-6),
        _ => 1.0,
    }
}

/// One parameter tensor's step, shared by [`apply`] and [`step_in_memory`]:
/// weight decay for ≥2-D tensors only, then the optimizer's update of
/// `(p, g)` into `out`. Returns the tensor's new state (one per state name).
fn step_tensor(
    spec: &TensorSpec,
    (p, g): (&[f32], &[f32]),
    clip_scale: f64,
    old: &[Option<std::borrow::Cow<[f32]>>],
    opts: &ApplyOptions,
    (lr, step): (f64, u64),
    out: &mut [f32],
) -> Vec<Vec<f32>> {
    let wd = if spec.shape.len() >= 2 {
        opts.weight_decay as f32
    } else {
        0.0
    };
    let param = Param {
        p,
        g,
        clip_scale: clip_scale as f32,
        wd,
    };
    match opts.optim {
        Optim::Nesterov => nesterov(&param, old[0].as_deref(), opts, lr, out),
        optim => adam_like(optim, &param, old, opts, (lr, step), out),
    }
}

/// One parameter tensor's step inputs.
struct Param<'a> {
    p: &'a [f32],
    g: &'a [f32],
    clip_scale: f32,
    /// Weight decay for this tensor (0 below 2-D).
    wd: f32,
}

/// Nesterov-momentum SGD (torch's `SGD(nesterov=True)`, dampening 0):
/// d = g + wd·p; buf = d on the first step, else μ·buf + d; p ← p − lr·(d + μ·buf).
/// Writes the new parameter into `out`; returns the new buffer.
fn nesterov(
    x: &Param,
    buf0: Option<&[f32]>,
    opts: &ApplyOptions,
    lr: f64,
    out: &mut [f32],
) -> Vec<Vec<f32>> {
    let (mu, lr) = (opts.momentum as f32, lr as f32);
    let mut buf = vec![0f32; x.p.len()];
    buf.par_chunks_mut(BLOCK)
        .zip(out.par_chunks_mut(BLOCK))
        .enumerate()
        .for_each(|(bi, (bc, oc))| {
            let o = bi * BLOCK;
            for j in 0..bc.len() {
                let d = x.g[o + j] * x.clip_scale + x.wd * x.p[o + j];
                bc[j] = match buf0 {
                    Some(b) => mu * b[o + j] + d,
                    None => d,
                };
                oc[j] = x.p[o + j] - lr * (d + mu * bc[j]);
            }
        });
    vec![buf]
}

/// AdamW or LAMB: the moments, then the step. Writes the new parameter into
/// `out`; returns the new first and second moments.
fn adam_like(
    optim: Optim,
    x: &Param,
    old: &[Option<std::borrow::Cow<[f32]>>],
    opts: &ApplyOptions,
    (lr, step): (f64, u64),
    out: &mut [f32],
) -> Vec<Vec<f32>> {
    let (p, g, wd, cs) = (x.p, x.g, x.wd, x.clip_scale);
    let (b1, b2, eps) = (opts.beta1 as f32, opts.beta2 as f32, opts.eps as f32);
    let zero = |k: usize| old[k].is_none();
    let m0 = |j: usize| old[0].as_ref().map_or(0.0, |m| m[j]);
    let v0 = |j: usize| old[1].as_ref().map_or(0.0, |v| v[j]);
    debug_assert!(zero(0) == zero(1));
    let mut m = vec![0f32; p.len()];
    let mut v = vec![0f32; p.len()];
    m.par_chunks_mut(BLOCK)
        .zip(v.par_chunks_mut(BLOCK))
        .enumerate()
        .for_each(|(bi, (mc, vc))| {
            let o = bi * BLOCK;
            for j in 0..mc.len() {
                let gj = g[o + j] * cs;
                mc[j] = b1 * m0(o + j) + (1.0 - b1) * gj;
                vc[j] = b2 * v0(o + j) + (1.0 - b2) * gj * gj;
            }
        });
    match optim {
        Optim::Adamw => {
            let bc1 = 1.0 - opts.beta1.powi(step as i32);
            let bc2 = 1.0 - opts.beta2.powi(step as i32);
            let step_size = (lr / bc1) as f32;
            let bc2_sqrt = bc2.sqrt() as f32;
            let decay = 1.0 - (lr * wd as f64) as f32;
            out.par_chunks_mut(BLOCK).enumerate().for_each(|(bi, oc)| {
                let o = bi * BLOCK;
                for j in 0..oc.len() {
                    let denom = v[o + j].sqrt() / bc2_sqrt + eps;
                    oc[j] = p[o + j] * decay - step_size * (m[o + j] / denom);
                }
            });
        }
        _ => {
            let adam = |j: usize| m[j] / (v[j].sqrt() + eps) + wd * p[j];
            let w_norm = sum_sq(p).sqrt().min(10.0);
            let a_sq: Vec<f64> = (0..p.len())
                .into_par_iter()
                .chunks(BLOCK)
                .map(|js| js.into_iter().map(|j| (adam(j) as f64).powi(2)).sum())
                .collect();
            let a_norm = a_sq.iter().sum::<f64>().sqrt();
            let trust = if w_norm == 0.0 || a_norm == 0.0 {
                1.0
            } else {
                w_norm / a_norm
            };
            let alpha = (lr * trust) as f32;
            out.par_chunks_mut(BLOCK).enumerate().for_each(|(bi, oc)| {
                let o = bi * BLOCK;
                for j in 0..oc.len() {
                    oc[j] = p[o + j] - alpha * adam(o + j);
                }
            });
        }
    }
    vec![m, v]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_cosine_schedule() {
        let s = Schedule::WarmupCosine {
            warmup: 4,
            total: 104,
        };
        assert!((s.lr(1.0, 0) - 0.25).abs() < 1e-12);
        assert!((s.lr(1.0, 3) - 1.0).abs() < 1e-12);
        assert!((s.lr(1.0, 4) - 1.0).abs() < 1e-12);
        assert!((s.lr(1.0, 54) - 0.55).abs() < 1e-12);
        assert!((s.lr(1.0, 104) - 0.1).abs() < 1e-12);
        assert!((s.lr(1.0, 500) - 0.1).abs() < 1e-12);
    }
}
