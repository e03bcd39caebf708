//! GPT-2 configurations, read and written as Hugging Face `config.json`.

use std::path::Path;

use serde_json::{json, Value};

use super::Error;

/// The shape of a GPT-2 model.
/// Why a config.json is not a GPT-2 config dtrain can train.
#[derive(Debug, thiserror::Error)]
pub enum NotGpt2 {
    #[error("model_type is '{0}', dtrain trains gpt2")]
    ModelType(String),
    #[error("activation_function '{0}' is not GPT-2's tanh GELU")]
    Activation(String),
    #[error("missing '{0}'")]
    Missing(&'static str),
    #[error("n_embd {n_embd} is not a multiple of n_head {n_head}")]
    Heads { n_embd: usize, n_head: usize },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub n_layer: usize,
    pub n_head: usize,
    pub n_embd: usize,
    pub n_positions: usize,
    pub vocab_size: usize,
    pub layer_norm_epsilon: f64,
}

impl Config {
    /// A named preset: tiny (tests, the local swarm), gpt2 (124M), gpt2-medium
    /// (350M), gpt2-large (774M).
    pub fn preset(name: &str) -> Option<Self> {
        let (n_layer, n_head, n_embd) = match name {
            "tiny" => (2, 2, 64),
            "gpt2" => (12, 12, 768),
            "gpt2-medium" => (24, 16, 1024),
            "gpt2-large" => (36, 20, 1280),
            "gpt2-xl" => (48, 25, 1600),
            _ => return None,
        };
        Some(Self {
            n_layer,
            n_head,
            n_embd,
            n_positions: 1024,
            vocab_size: 50257,
            layer_norm_epsilon: 1e-5,
        })
    }

    /// A preset name or a path to a config.json.
    pub fn from_arch(arch: &str) -> Result<Self, Error> {
        if let Some(c) = Self::preset(arch) {
            return Ok(c);
        }
        let p = Path::new(arch);
        if p.exists() {
            return Self::read(p);
        }
        Err(Error::Config(format!("unknown architecture '{arch}' (tiny, gpt2, gpt2-medium, gpt2-large, gpt2-xl or a config.json)")))
    }

    pub fn read(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Io(path.to_path_buf(), e))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        Self::from_json(&v).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    pub fn from_json(v: &Value) -> Result<Self, NotGpt2> {
        if let Some(t) = v.get("model_type").and_then(Value::as_str) {
            if t != "gpt2" {
                return Err(NotGpt2::ModelType(t.to_string()));
            }
        }
        if let Some(a) = v.get("activation_function").and_then(Value::as_str) {
            if a != "gelu_new" && a != "gelu_pytorch_tanh" {
                return Err(NotGpt2::Activation(a.to_string()));
            }
        }
        let get = |k: &'static str, default: Option<usize>| -> Result<usize, NotGpt2> {
            match v.get(k).and_then(Value::as_u64) {
                Some(x) => Ok(x as usize),
                None => default.ok_or(NotGpt2::Missing(k)),
            }
        };
        let c = Self {
            n_layer: get("n_layer", None)?,
            n_head: get("n_head", None)?,
            n_embd: get("n_embd", None)?,
            n_positions: get("n_positions", Some(1024))?,
            vocab_size: get("vocab_size", Some(50257))?,
            layer_norm_epsilon: v
                .get("layer_norm_epsilon")
                .and_then(Value::as_f64)
                .unwrap_or(1e-5),
        };
        if c.n_head == 0 || !c.n_embd.is_multiple_of(c.n_head) {
            return Err(NotGpt2::Heads {
                n_embd: c.n_embd,
                n_head: c.n_head,
            });
        }
        Ok(c)
    }

    /// transformers' GPT2Config fields (dropout off: dtrain trains without it).
    pub fn to_json(&self) -> Value {
        json!({
            "architectures": ["GPT2LMHeadModel"],
            "model_type": "gpt2",
            "activation_function": "gelu_new",
            "n_layer": self.n_layer,
            "n_head": self.n_head,
            "n_embd": self.n_embd,
            "n_positions": self.n_positions,
            "n_ctx": self.n_positions,
            "n_inner": null,
            "vocab_size": self.vocab_size,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "initializer_range": 0.02,
            "attn_pdrop": 0.0,
            "embd_pdrop": 0.0,
            "resid_pdrop": 0.0,
            "summary_first_dropout": 0.0,
            "scale_attn_weights": true,
            "tie_word_embeddings": true,
            "bos_token_id": 50256,
            "eos_token_id": 50256,
            "torch_dtype": "float32"
        })
    }

    /// Parameter names in dtrain's canonical order (transformers' names).
    pub fn param_names(&self) -> Vec<String> {
        let mut v = vec![
            "transformer.wte.weight".to_string(),
            "transformer.wpe.weight".to_string(),
        ];
        for i in 0..self.n_layer {
            for s in LAYER_PARAMS {
                v.push(format!("transformer.h.{i}.{s}"));
            }
        }
        v.push("transformer.ln_f.weight".into());
        v.push("transformer.ln_f.bias".into());
        v
    }

    /// Shapes in the same order (Conv1D weights are [in, out]).
    pub fn param_shapes(&self) -> Vec<Vec<usize>> {
        let c = self.n_embd;
        let mut v = vec![vec![self.vocab_size, c], vec![self.n_positions, c]];
        for _ in 0..self.n_layer {
            v.extend([
                vec![c],
                vec![c],
                vec![c, 3 * c],
                vec![3 * c],
                vec![c, c],
                vec![c],
                vec![c],
                vec![c],
                vec![c, 4 * c],
                vec![4 * c],
                vec![4 * c, c],
                vec![c],
            ]);
        }
        v.push(vec![c]);
        v.push(vec![c]);
        v
    }

    pub fn num_params(&self) -> usize {
        self.param_shapes()
            .iter()
            .map(|s| s.iter().product::<usize>())
            .sum()
    }

    /// Matmul FLOPs per token for forward+backward (6N plus attention), as in
    /// nanoGPT's MFU estimate.
    pub fn flops_per_token(&self, seq_len: usize) -> f64 {
        let n = self.num_params() as f64;
        6.0 * n + 12.0 * (self.n_layer * self.n_embd * seq_len) as f64
    }
}

/// The twelve tensors of a transformer block, in order.
pub const LAYER_PARAMS: [&str; 12] = [
    "ln_1.weight",
    "ln_1.bias",
    "attn.c_attn.weight",
    "attn.c_attn.bias",
    "attn.c_proj.weight",
    "attn.c_proj.bias",
    "ln_2.weight",
    "ln_2.bias",
    "mlp.c_fc.weight",
    "mlp.c_fc.bias",
    "mlp.c_proj.weight",
    "mlp.c_proj.bias",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_has_124m_parameters() {
        let c = Config::preset("gpt2").unwrap();
        assert_eq!(c.num_params(), 124_439_808);
        assert_eq!(c.param_names().len(), c.param_shapes().len());
        assert_eq!(Config::from_json(&c.to_json()).unwrap(), c);
    }
}
