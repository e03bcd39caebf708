//! `apply`: AdamW and LAMB steps on memory-mapped checkpoints.
//!
//! Every miner that applies the same averaged gradient to the same checkpoint
//! must end with the same model hash. So the optimizer is plain Rust on f32
//! slices: each element's update is a fixed sequence of IEEE operations, and the
//! per-tensor norms LAMB and clipping need are summed in f64 over fixed blocks in
//! a fixed order. The result does not depend on thread count or libtorch's
//! kernels. Weights, moments and the gradient stay memory-mapped; the new
//! checkpoint is written through mappings into a temporary folder and swapped in.
//!
//! Semantics follow `torch.optim.AdamW` and `torch_optimizer.Lamb` (no
//! debiasing, trust ratio ‖w‖ clamped to 10 over ‖adam step + wd·w‖); weight
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
}

impl Optim {
    pub fn name(self) -> &'static str {
        match self {
            Optim::Adamw => "adamw",
            Optim::Lamb => "lamb",
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

fn moment_specs(specs: &[TensorSpec]) -> Vec<TensorSpec> {
    let mut v = Vec::with_capacity(specs.len() * 2);
    for s in specs {
        v.push(TensorSpec::new(
            format!("exp_avg.{}", s.name),
            DType::F32,
            &s.shape,
        ));
    }
    for s in specs {
        v.push(TensorSpec::new(
            format!("exp_avg_sq.{}", s.name),
            DType::F32,
            &s.shape,
        ));
    }
    v
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
    let clip_scale = match opts.clip {
        Some(max) if gnorm > max => max / (gnorm + 1e-6),
        _ => 1.0,
    };

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
        crate::tensors::check_layout(&moment_specs(&specs), &f.specs()).map_err(|what| {
            crate::tensors::Error::Layout {
                path: state_path.clone(),
                other: "the model".into(),
                what: Box::new(what),
            }
        })?;
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

    let mut new_m: Vec<Vec<f32>> = Vec::with_capacity(specs.len());
    let mut new_v: Vec<Vec<f32>> = Vec::with_capacity(specs.len());
    let (b1, b2, eps) = (opts.beta1 as f32, opts.beta2 as f32, opts.eps as f32);
    let mut goff = 0;
    for (i, s) in specs.iter().enumerate() {
        let p = ckpt.param(i)?;
        let g = &g_all[goff..goff + s.numel()];
        goff += s.numel();
        let (m0, v0) = match &state {
            Some(f) => (
                f.tensor_f32(&format!("exp_avg.{}", s.name))?,
                f.tensor_f32(&format!("exp_avg_sq.{}", s.name))?,
            ),
            None => (vec![0f32; s.numel()].into(), vec![0f32; s.numel()].into()),
        };
        let wd = if s.shape.len() >= 2 {
            opts.weight_decay as f32
        } else {
            0.0
        };
        let cs = clip_scale as f32;
        // moments
        let mut m = vec![0f32; s.numel()];
        let mut v = vec![0f32; s.numel()];
        m.par_chunks_mut(BLOCK)
            .zip(v.par_chunks_mut(BLOCK))
            .enumerate()
            .for_each(|(bi, (mc, vc))| {
                let o = bi * BLOCK;
                for j in 0..mc.len() {
                    let gj = g[o + j] * cs;
                    mc[j] = b1 * m0[o + j] + (1.0 - b1) * gj;
                    vc[j] = b2 * v0[o + j] + (1.0 - b2) * gj * gj;
                }
            });
        let out = &mut wm.flat_f32_mut()[goff - s.numel()..goff];
        match opts.optim {
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
            Optim::Lamb => {
                let adam = |j: usize| m[j] / (v[j].sqrt() + eps) + wd * p[j];
                let w_norm = sum_sq(&p).sqrt().min(10.0);
                let a_sq: Vec<f64> = (0..s.numel())
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
        new_m.push(m);
        new_v.push(v);
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
    let mspecs = moment_specs(&specs);
    let data: Vec<&[f32]> = new_m
        .iter()
        .chain(new_v.iter())
        .map(Vec::as_slice)
        .collect();
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
