//! dtrain_torch: what touches a model in libtorch (through tch): the GPT-2
//! itself ([`gpt`]), the micro-batch loop of train-step and eval ([`train`]),
//! verify with its recomputation ([`verify`]), the inner loop's
//! AdamW on a GPU ([`optim`]), sketches on the training device
//! ([`sketch`]), CUDA ([`device`]) and what this build runs on ([`info`]).
//!
//! Why a crate of its own: linking libtorch costs every process ~0.3 s and
//! ~120 MB before `main`. The core crate (`dtrain`) and the `dtrain` binary
//! stay free of it; only `dtrain-torch`, which `dtrain` hands these commands
//! to, links it.

pub mod device;
pub mod gpt;
pub mod info;
pub mod optim;
pub mod sketch;
pub mod train;
pub mod verify;
