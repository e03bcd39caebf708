//! dtrain: decentralized GPT-2 training (Bittensor subnet 38's system) as small
//! Unix commands. This crate is the core library, and it does not link
//! libtorch: formats, files, keys, data, tokenizer, reduce, the hub, receipts,
//! sketches, scores, the ledger and the optimizers. What touches a model in
//! torch (the GPT, training, verify's recomputation, CUDA) is the torch crate
//! (`src/torch/`, `dtrain_torch`). The `dtrain` binary in `cmd/` only parses
//! arguments, calls into the libraries and prints; it hands the commands that
//! need libtorch to its companion `dtrain-torch`.
//!
//! Data flow of one epoch (every arrow is a file or stdout):
//!
//! ```text
//! miner:     fetch-shard → tokenize → train-step → reduce → apply → push
//! validator: reduce (weight 0) → apply → verify → score → ledger → push
//! ```

pub mod data;
pub mod device;
pub mod fsio;
pub mod hub;
pub mod inner;
pub mod keys;
pub mod ledger;
pub mod log;
pub mod model;
pub mod optim;
pub mod panics;
pub mod plot;
pub mod progress;
pub mod ranges;
pub mod receipt;
pub mod reduce;
pub mod relay;
pub mod roster;
pub mod score;
pub mod simd;
pub mod sketch;
pub mod status;
pub mod tensors;
pub mod tokenize;
pub mod tokenizer;
pub mod tokens;
pub mod verify;
