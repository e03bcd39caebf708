//! GPT-2: configurations, checkpoints in Hugging Face layout, initialisation.
//! The model itself, in tch, is the torch crate's (`dtrain_torch::gpt`).
//!
//! A checkpoint is a folder: `config.json` (transformers' GPT2Config fields) and
//! `model.safetensors` with transformers' parameter names (Conv1D weights stored
//! [in, out], lm_head tied to wte and not stored), so
//! `GPT2LMHeadModel.from_pretrained(folder)` loads ours and we load theirs.
//! After `apply` the folder also holds `optimizer.safetensors` (moments) and
//! `dtrain.json` (provenance). A model's identity is the blake3 of its
//! `model.safetensors`.

pub mod config;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

pub use config::Config;

use crate::tensors::{DType, TensorFile, TensorSpec, TensorWriter};

pub const CONFIG_FILE: &str = "config.json";
pub const MODEL_FILE: &str = "model.safetensors";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const PROVENANCE_FILE: &str = "dtrain.json";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("model config: {0}")]
    Config(String),
    #[error("checkpoint {dir}: {what}")]
    Checkpoint { dir: PathBuf, what: String },
    #[error(transparent)]
    Tensors(#[from] crate::tensors::Error),
}

/// Compute precision of the matmuls and attention.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    F32,
    Bf16,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }
}

/// An opened checkpoint folder (the weights stay memory-mapped).
pub struct Checkpoint {
    pub dir: PathBuf,
    pub config: Config,
    /// blake3 hex of model.safetensors.
    pub hash: String,
    file: TensorFile,
    /// For each canonical parameter, its name in the file.
    names: Vec<String>,
}

impl Checkpoint {
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, Error> {
        let dir = dir.as_ref().to_path_buf();
        let bad = |what: String| Error::Checkpoint {
            dir: dir.clone(),
            what,
        };
        if !dir.is_dir() {
            return Err(bad(
                "not a folder (a checkpoint holds config.json and model.safetensors)".into(),
            ));
        }
        let config = Config::read(&dir.join(CONFIG_FILE))?;
        let path = dir.join(MODEL_FILE);
        let file = TensorFile::open(&path)?;
        let mut names = Vec::new();
        for (name, shape) in config.param_names().into_iter().zip(config.param_shapes()) {
            // transformers' GPT2Model (no LM head) saves names without the prefix
            let found = [
                name.clone(),
                name.trim_start_matches("transformer.").to_string(),
            ]
            .into_iter()
            .find(|n| file.entry(n).is_ok())
            .ok_or_else(|| bad(format!("{MODEL_FILE} has no tensor {name}")))?;
            let e = file.entry(&found)?;
            if e.spec.shape != shape {
                return Err(bad(format!(
                    "{found} has shape {:?}, config.json implies {shape:?}",
                    e.spec.shape
                )));
            }
            names.push(found);
        }
        let hash = crate::fsio::hash_file(&path)
            .map_err(|e| Error::Io(path.clone(), e))?
            .to_hex()
            .to_string();
        Ok(Self {
            dir,
            config,
            hash,
            file,
            names,
        })
    }

    /// Parameter `i` (canonical order) as f32.
    pub fn param(&self, i: usize) -> Result<Cow<'_, [f32]>, Error> {
        Ok(self.file.tensor_f32(&self.names[i])?)
    }

    /// The specs of the parameters in canonical order, as f32.
    pub fn specs(&self) -> Vec<TensorSpec> {
        specs(&self.config)
    }

    /// The provenance record, if this checkpoint came out of `apply`.
    pub fn provenance(&self) -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(self.dir.join(PROVENANCE_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }
}

/// Canonical parameter specs (f32).
pub fn specs(config: &Config) -> Vec<TensorSpec> {
    config
        .param_names()
        .into_iter()
        .zip(config.param_shapes())
        .map(|(n, s)| TensorSpec::new(n, DType::F32, &s))
        .collect()
}

/// The metadata of every model.safetensors dtrain writes (what transformers writes).
pub fn model_metadata() -> BTreeMap<String, String> {
    BTreeMap::from([("format".to_string(), "pt".to_string())])
}

/// Writes config.json into a checkpoint folder being built.
pub fn write_config(dir: &Path, config: &Config) -> Result<(), Error> {
    let p = dir.join(CONFIG_FILE);
    let text = serde_json::to_string_pretty(&config.to_json()).expect("json") + "\n";
    crate::fsio::write_atomic(&p, text.as_bytes()).map_err(|e| Error::Io(p, e))
}

/// Standard deviation of GPT-2's initialisation for a parameter: N(0, 0.02),
/// residual projections (`c_proj.weight`) scaled by 1/sqrt(2·n_layer), biases
/// zero, LayerNorm weights one.
fn init_rule(name: &str, n_layer: usize) -> Init {
    if name.contains(".ln_") {
        if name.ends_with(".weight") {
            Init::Const(1.0)
        } else {
            Init::Const(0.0)
        }
    } else if name.ends_with(".bias") {
        Init::Const(0.0)
    } else if name.ends_with("c_proj.weight") {
        Init::Normal(0.02 / (2.0 * n_layer as f64).sqrt())
    } else {
        Init::Normal(0.02)
    }
}

enum Init {
    Const(f32),
    Normal(f64),
}

/// Fills `out` with N(0, std) from a counter-mode blake3 stream keyed by
/// (seed, parameter name): independent of thread count and of torch's RNG,
/// so `init --seed S` is bit-identical everywhere.
fn fill_normal(out: &mut [f32], std: f64, seed: u64, name: &str) {
    const BLOCK: usize = 1 << 14;
    let mut key_in = b"dtrain init v1".to_vec();
    key_in.extend_from_slice(&seed.to_le_bytes());
    key_in.extend_from_slice(name.as_bytes());
    let key = *blake3::hash(&key_in).as_bytes();
    out.par_chunks_mut(BLOCK)
        .enumerate()
        .for_each(|(b, chunk)| {
            let mut xof = blake3::Hasher::new_keyed(&key)
                .update(&(b as u64).to_le_bytes())
                .finalize_xof();
            let mut buf = vec![0u8; chunk.len().div_ceil(2) * 16];
            xof.fill(&mut buf);
            for (i, pair) in buf.chunks_exact(16).enumerate() {
                let a = u64::from_le_bytes(pair[..8].try_into().unwrap());
                let c = u64::from_le_bytes(pair[8..].try_into().unwrap());
                // Box–Muller: u1 in (0, 1], u2 in [0, 1)
                let u1 = ((a >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64);
                let u2 = (c >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
                let r = (-2.0 * u1.ln()).sqrt() * std;
                let th = std::f64::consts::TAU * u2;
                chunk[2 * i] = (r * th.cos()) as f32;
                if 2 * i + 1 < chunk.len() {
                    chunk[2 * i + 1] = (r * th.sin()) as f32;
                }
            }
        });
}

/// Creates a freshly initialised checkpoint folder at `dest` (atomically).
/// Returns the model hash.
pub fn init(config: &Config, seed: u64, dest: &Path) -> Result<String, Error> {
    let dir = crate::fsio::AtomicDir::create(dest).map_err(|e| Error::Io(dest.to_path_buf(), e))?;
    write_config(dir.path(), config)?;
    let specs = specs(config);
    let model = dir.path().join(MODEL_FILE);
    let mut w = TensorWriter::create(&model, &specs, &model_metadata())?;
    let mut start = 0;
    let flat = w.flat_f32_mut();
    for s in &specs {
        let out = &mut flat[start..start + s.numel()];
        match init_rule(&s.name, config.n_layer) {
            Init::Const(v) => out.fill(v),
            Init::Normal(std) => fill_normal(out, std, seed, &s.name),
        }
        start += s.numel();
    }
    w.commit()?;
    let hash = crate::fsio::hash_file(&model)
        .map_err(|e| Error::Io(model.clone(), e))?
        .to_hex()
        .to_string();
    dir.commit().map_err(|e| Error::Io(dest.to_path_buf(), e))?;
    Ok(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_is_deterministic_and_has_gpt2_statistics() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config::preset("tiny").unwrap();
        let h1 = init(&cfg, 7, &dir.path().join("a")).unwrap();
        let h2 = init(&cfg, 7, &dir.path().join("b")).unwrap();
        let h3 = init(&cfg, 8, &dir.path().join("c")).unwrap();
        assert_eq!(h1, h2);
        assert_ne!(h1, h3);
        let ck = Checkpoint::open(dir.path().join("a")).unwrap();
        assert_eq!(ck.hash, h1);
        let wte = ck.param(0).unwrap();
        let n = wte.len() as f64;
        let mean = wte.iter().map(|&x| x as f64).sum::<f64>() / n;
        let std = (wte.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
        assert!(
            mean.abs() < 1e-3 && (std - 0.02).abs() < 2e-4,
            "mean {mean} std {std}"
        );
        let names = cfg.param_names();
        let proj = names
            .iter()
            .position(|n| n.ends_with("h.0.mlp.c_proj.weight"))
            .unwrap();
        let p = ck.param(proj).unwrap();
        let pstd = (p.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / p.len() as f64).sqrt();
        assert!(
            (pstd - 0.01).abs() < 5e-4,
            "c_proj std {pstd} (0.02/sqrt(4))"
        );
        let ln = names
            .iter()
            .position(|n| n.ends_with("h.1.ln_2.weight"))
            .unwrap();
        assert!(ck.param(ln).unwrap().iter().all(|&x| x == 1.0));
    }
}
