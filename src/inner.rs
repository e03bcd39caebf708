//! DiLoCo's inner loop as a validator sees it: the states a miner publishes
//! and commits to, so that any stretch of the loop can be recomputed alone.
//!
//! A miner that takes H inner steps writes its state (parameters, optimizer
//! moments and step count) after every k-th step and after the last, one
//! safetensors file each, and its signed receipt lists each file's blake3
//! ([`InnerClaim::states`]). The pseudo-gradient must be θ₀ minus the last
//! state's parameters, bit for bit. A validator picks segments (k steps from
//! one published state to the next) with its own randomness after the receipt
//! is signed, and recomputes them from their start state: a miner that made up
//! any state is caught when a segment ending in it is picked. README has the
//! bounds.
//!
//! Why states and not only hashes: a segment can be recomputed only from the
//! state it starts in, and AdamW's moments are part of that state.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::optim::{ApplyOptions, MemoryState, Optim, Schedule};
use crate::tensors::{TensorFile, TensorSpec};

/// What a receipt says about the inner loop that produced its pseudo-gradient.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct InnerClaim {
    /// The inner optimizer's settings (the subnet's: a validator compares them).
    pub optim: InnerOptim,
    /// A state is published after every this many inner steps (and the last).
    pub state_every: usize,
    /// The state the loop started from when it was carried from the previous
    /// round (`train-step --inner-state`); None: fresh moments on θ₀.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial: Option<StateCommit>,
    /// The published states, in order; the last is after the last inner step.
    pub states: Vec<StateCommit>,
}

/// The inner optimizer's settings, as a receipt records them.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct InnerOptim {
    pub optim: Optim,
    pub lr: f64,
    pub weight_decay: f64,
    /// Gradient-norm clip (None: no clipping).
    pub clip: Option<f64>,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub momentum: f64,
}

impl InnerOptim {
    pub fn of(o: &ApplyOptions) -> Self {
        InnerOptim {
            optim: o.optim,
            lr: o.lr,
            weight_decay: o.weight_decay,
            clip: o.clip,
            beta1: o.beta1,
            beta2: o.beta2,
            eps: o.eps,
            momentum: o.momentum,
        }
    }

    /// The options of each inner step (constant learning rate).
    pub fn options(&self) -> ApplyOptions {
        ApplyOptions {
            optim: self.optim,
            lr: self.lr,
            schedule: Schedule::Constant,
            epoch: None,
            weight_decay: self.weight_decay,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            momentum: self.momentum,
            clip: self.clip,
        }
    }
}

/// One published state: after which inner step, the file's blake3, and the
/// blake3 of its optimizer moments and step count (what a carried state must
/// match next round).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StateCommit {
    pub inner_step: usize,
    pub file: String,
    pub moments: String,
}

/// Where the state after `inner_step` steps lives in a states folder.
pub fn state_path(dir: &Path, inner_step: usize) -> PathBuf {
    dir.join(format!("state-{inner_step:06}.safetensors"))
}

/// The inner steps after which states are published: every `every`-th, and the last.
pub fn checkpoints(steps: usize, every: usize) -> Vec<usize> {
    let every = every.max(1);
    let mut at: Vec<usize> = (1..=steps / every).map(|i| i * every).collect();
    if at.last() != Some(&steps) {
        at.push(steps);
    }
    at
}

/// The segments between published states: inner steps [start, end).
pub fn segments(steps: usize, every: usize) -> Vec<Range<usize>> {
    let ends = checkpoints(steps, every);
    let starts = std::iter::once(0).chain(ends.iter().copied());
    starts
        .zip(ends.iter().copied())
        .map(|(s, e)| s..e)
        .collect()
}

/// A state file's tensors: the parameters, then the optimizer's moments.
pub fn state_specs(params: &[TensorSpec], optim: Optim) -> Vec<TensorSpec> {
    let mut specs = params.to_vec();
    specs.extend(crate::optim::state_specs(optim, params));
    specs
}

/// blake3 of an optimizer state's step count and moments.
pub fn moments_hash(state: &MemoryState) -> String {
    let mut h = blake3::Hasher::new();
    h.update(&state.step.to_le_bytes());
    for t in state.tensors() {
        h.update(crate::reduce::wire::f32_bytes(t));
    }
    h.finalize().to_hex().to_string()
}

/// A loop's state: parameters (flat, file order) and optimizer state.
pub struct State {
    pub theta: Vec<f32>,
    pub memory: MemoryState,
}

/// Writes the state after `inner_step` steps (atomically) and returns its commit.
pub fn write_state(
    path: &Path,
    params: &[TensorSpec],
    optim: Optim,
    (theta, memory): (&[f32], &MemoryState),
    inner_step: usize,
) -> Result<StateCommit, StateError> {
    let specs = state_specs(params, optim);
    let mut data: Vec<&[f32]> = Vec::with_capacity(specs.len());
    let mut at = 0;
    for s in params {
        data.push(&theta[at..at + s.numel()]);
        at += s.numel();
    }
    data.extend(memory.tensors());
    let mut meta = BTreeMap::new();
    meta.insert("inner_step".to_string(), inner_step.to_string());
    meta.insert("optim".to_string(), optim.name().to_string());
    meta.insert("step".to_string(), memory.step.to_string());
    crate::tensors::write_f32(path, &specs, &data, &meta)?;
    let file = crate::fsio::hash_file(path).map_err(|e| StateError::Io(path.to_path_buf(), e))?;
    Ok(StateCommit {
        inner_step,
        file: file.to_hex().to_string(),
        moments: moments_hash(memory),
    })
}

/// Why a published state cannot be used: every one is the miner's defect.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}", path = .0.display(), source = .1)]
    Io(PathBuf, std::io::Error),
    #[error(transparent)]
    Tensors(#[from] crate::tensors::Error),
    #[error("{}: not a state of this model and optimizer: {what}", path.display())]
    Layout { path: PathBuf, what: String },
    #[error("{}: its blake3 is {got}, the receipt commits to {want}", path.display())]
    Hash {
        path: PathBuf,
        got: String,
        want: String,
    },
    #[error("{}: {what}", path.display())]
    Meta { path: PathBuf, what: String },
}

/// Opens a state file: its layout is checked before anything else is read.
/// Returns the state and the inner step it was written after.
pub fn open_state(
    path: &Path,
    params: &[TensorSpec],
    optim: Optim,
) -> Result<(State, u64), StateError> {
    let file = TensorFile::open(path)?;
    crate::tensors::check_layout(&state_specs(params, optim), &file.specs()).map_err(|what| {
        StateError::Layout {
            path: path.to_path_buf(),
            what: what.to_string(),
        }
    })?;
    if file.meta("optim")? != optim.name() {
        return Err(StateError::Meta {
            path: path.to_path_buf(),
            what: format!("a {} state, not {}", file.meta("optim")?, optim.name()),
        });
    }
    let flat = file.to_f32()?;
    let n_theta: usize = params.iter().map(|s| s.numel()).sum();
    let (theta, rest) = flat.split_at(n_theta);
    let mut tensors = Vec::new();
    let mut at = 0;
    for s in crate::optim::state_specs(optim, params) {
        tensors.push(rest[at..at + s.numel()].to_vec());
        at += s.numel();
    }
    let memory = MemoryState::from_tensors(optim, params.len(), file.meta_u64("step")?, tensors);
    let state = State {
        theta: theta.to_vec(),
        memory,
    };
    Ok((state, file.meta_u64("inner_step")?))
}

/// Reads a published state, checking it against its commit: layout (before
/// anything else is read), blake3, inner step, optimizer and moments.
pub fn read_state(
    path: &Path,
    params: &[TensorSpec],
    optim: Optim,
    commit: &StateCommit,
) -> Result<State, StateError> {
    let (state, inner_step) = open_state(path, params, optim)?;
    let got = crate::fsio::hash_file(path)
        .map_err(|e| StateError::Io(path.to_path_buf(), e))?
        .to_hex()
        .to_string();
    let meta_err = |what: String| StateError::Meta {
        path: path.to_path_buf(),
        what,
    };
    if got != commit.file {
        return Err(StateError::Hash {
            path: path.to_path_buf(),
            got,
            want: commit.file.clone(),
        });
    }
    if inner_step != commit.inner_step as u64 {
        return Err(meta_err(format!(
            "it is the state after inner step {inner_step}, the receipt lists step {}",
            commit.inner_step
        )));
    }
    if moments_hash(&state.memory) != commit.moments {
        return Err(meta_err(
            "its moments are not the ones the receipt commits to".into(),
        ));
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_end_at_the_last_step() {
        assert_eq!(checkpoints(8, 2), vec![2, 4, 6, 8]);
        assert_eq!(checkpoints(7, 3), vec![3, 6, 7]);
        assert_eq!(checkpoints(4, 9), vec![4]);
        assert_eq!(segments(7, 3), vec![0..3, 3..6, 6..7]);
    }

    #[test]
    fn a_state_round_trips_and_a_changed_moment_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let params = vec![
            TensorSpec::new("w", crate::tensors::DType::F32, &[2, 3]),
            TensorSpec::new("b", crate::tensors::DType::F32, &[3]),
        ];
        let moments: Vec<Vec<f32>> = vec![vec![0.5; 6], vec![0.25; 3], vec![1.0; 6], vec![2.0; 3]];
        let state = State {
            theta: (0..9).map(|i| i as f32).collect(),
            memory: MemoryState::from_tensors(Optim::Adamw, 2, 3, moments),
        };
        let path = state_path(dir.path(), 4);
        let written = (&state.theta[..], &state.memory);
        let commit = write_state(&path, &params, Optim::Adamw, written, 4).unwrap();
        let back = read_state(&path, &params, Optim::Adamw, &commit).unwrap();
        assert_eq!(back.theta, state.theta);
        assert_eq!(back.memory.step, 3);
        assert_eq!(moments_hash(&back.memory), commit.moments);
        let other = StateCommit {
            moments: "0".repeat(64),
            ..commit.clone()
        };
        assert!(matches!(
            read_state(&path, &params, Optim::Adamw, &other),
            Err(StateError::Meta { .. })
        ));
        assert!(matches!(
            read_state(&path, &params, Optim::Nesterov, &commit),
            Err(StateError::Layout { .. })
        ));
    }
}
