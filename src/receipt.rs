//! Receipts: what a miner claims about one train-step, in JSON, signed.
//!
//! A receipt names the model and token shard (by blake3), the sequences, each
//! micro-batch's loss and gradient sketch ([`crate::sketch`]), and the gradient
//! file it produced (by blake3). It is signed with the miner's ed25519 key over
//! its canonical bytes (the JSON of the receipt with `signature` empty), so a
//! validator can hold the miner to every number in it and recompute any part.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::keys::{Key, PublicKey};
use crate::ranges::RangeList;

pub const VERSION: u32 = 2;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MicroBatch {
    pub sequences: RangeList,
    pub loss: f64,
    /// Sketch of this micro-batch's mean gradient.
    #[serde(default)]
    pub sketch: Vec<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Receipt {
    pub version: u32,
    /// The miner's name (its peer name in reduce rounds), if it gave one.
    #[serde(default)]
    pub miner: Option<String>,
    /// The round (e.g. `epoch-12`) this work is for: signed, so a receipt
    /// cannot be replayed in another round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round: Option<String>,
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
    /// DiLoCo: the file is the pseudo-gradient θ₀ − θ_H of this many inner
    /// optimizer steps (absent: a plain gradient).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inner_steps: Option<usize>,
    /// DiLoCo: the inner optimizer and the published states ([`crate::inner`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inner: Option<crate::inner::InnerClaim>,
    /// Number of ±1 projections per sketch.
    #[serde(default)]
    pub sketch_k: usize,
    pub device: String,
    pub precision: String,
    pub seconds: f64,
    /// The signer's public key and its ed25519 signature (hex).
    #[serde(default)]
    pub pubkey: Option<String>,
    #[serde(default)]
    pub signature: Option<String>,
}

impl Receipt {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("receipt serializes") + "\n"
    }

    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Reads a receipt file (at most [`MAX_FILE`] bytes: it is a miner's).
    pub fn read(path: &Path) -> Result<Self, ReadError> {
        crate::fsio::read_json(path, MAX_FILE, "receipt")
    }

    /// The bytes a signature covers: the receipt with no signature.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let unsigned = Receipt {
            signature: None,
            ..self.clone()
        };
        serde_json::to_vec(&unsigned).expect("receipt serializes")
    }

    pub fn sign(&mut self, key: &Key) {
        self.pubkey = Some(key.public().to_hex());
        self.signature = None;
        self.signature = Some(hex::encode(key.sign(&self.signing_bytes())));
    }

    /// Checks the signature, against `expected` when the miner's key is known.
    pub fn check_signature(&self, expected: Option<&PublicKey>) -> Result<PublicKey, Unsigned> {
        let (Some(pk), Some(sig)) = (&self.pubkey, &self.signature) else {
            return Err(Unsigned::NoSignature);
        };
        let pk = PublicKey::from_hex(pk)?;
        if let Some(want) = expected {
            if want != &pk {
                return Err(Unsigned::OtherKey {
                    signer: pk.to_hex(),
                    miner: want.to_hex(),
                });
            }
        }
        pk.verify_hex(&self.signing_bytes(), sig)
            .map_err(|_| Unsigned::Mismatch)?;
        Ok(pk)
    }
}

/// A receipt is at most this large (a miner's file: bounded before it is read).
pub const MAX_FILE: u64 = 64 << 20;

/// Why a receipt file could not be read.
pub type ReadError = crate::fsio::JsonFileError;

/// Why a receipt's signature is not the miner's.
#[derive(Debug, thiserror::Error)]
pub enum Unsigned {
    #[error("the receipt is not signed")]
    NoSignature,
    #[error(transparent)]
    Key(#[from] crate::keys::Error),
    #[error("signed by {signer}, not by the miner's key {miner}")]
    OtherKey { signer: String, miner: String },
    #[error("the signature does not match the receipt")]
    Mismatch,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_cover_every_field() {
        let mut r = Receipt {
            version: VERSION,
            miner: Some("m".into()),
            round: Some("epoch-1".into()),
            model: "a".into(),
            shard: "b".into(),
            sequences: RangeList::all(4),
            seq_len: 8,
            micro_batch: 2,
            micro_batches: vec![MicroBatch {
                sequences: RangeList::all(2),
                loss: 3.0,
                sketch: vec![1.0, -2.0],
            }],
            loss: 3.0,
            tokens: 32,
            grad: "c".into(),
            grad_norm: 1.0,
            inner_steps: None,
            inner: None,
            sketch_k: 2,
            device: "cpu".into(),
            precision: "f32".into(),
            seconds: 1.0,
            pubkey: None,
            signature: None,
        };
        let k = Key::generate();
        r.sign(&k);
        let back = Receipt::from_json(&r.to_json()).unwrap();
        assert!(back.check_signature(Some(&k.public())).is_ok());
        let mut edited = back.clone();
        edited.micro_batches[0].loss = 2.9;
        assert!(edited.check_signature(None).is_err());
        assert!(back
            .check_signature(Some(&Key::generate().public()))
            .is_err());
    }
}
