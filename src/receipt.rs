//! Receipts: what a miner claims about one train-step, in JSON.
//!
//! A receipt names the model and token shard (by blake3), the sequences, the
//! per-micro-batch losses and the gradient file it produced (by blake3), so a
//! validator can recompute any part of the work and tie it to the submitted
//! gradient.

use serde::{Deserialize, Serialize};

use crate::ranges::RangeList;

pub const VERSION: u32 = 1;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MicroBatch {
    pub sequences: RangeList,
    pub loss: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Receipt {
    pub version: u32,
    /// blake3 of the model.safetensors the gradient was computed from.
    pub model: String,
    /// blake3 of the token shard.
    pub shard: String,
    pub sequences: RangeList,
    pub seq_len: usize,
    pub micro_batch: usize,
    pub micro_batches: Vec<MicroBatch>,
    /// Mean loss over all sequences.
    pub loss: f64,
    pub tokens: u64,
    /// blake3 of the gradient file.
    pub grad: String,
    /// Global L2 norm of the gradient.
    pub grad_norm: f64,
    pub device: String,
    pub precision: String,
    pub seconds: f64,
}

impl Receipt {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("receipt serializes") + "\n"
    }

    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}
