//! dtrain: decentralized GPT-2 training (Bittensor subnet 38's system) as small
//! Unix commands. This crate is the library; the `dtrain` binary in `cmd/` only
//! parses arguments, calls into it and prints.
//!
//! Data flow of one epoch (every arrow is a file or stdout):
//!
//! ```text
//! miner:     fetch-shard → tokenize → train-step → reduce → apply → push
//! validator: reduce (weight 0) → apply → verify → score → ledger → push
//! ```

pub mod data;
pub mod device;
pub mod exit;
pub mod fsio;
pub mod hub;
pub mod info;
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
pub mod score;
pub mod simd;
pub mod sketch;
pub mod status;
pub mod tensors;
pub mod tokenize;
pub mod tokenizer;
pub mod tokens;
pub mod train;
pub mod verify;
