//! Error feedback (`reduce --residual FILE`): what a lossy wire loses is
//! kept in FILE and added to the next round's values before they are
//! quantised, so over rounds the sum of what was sent tends to the sum of
//! what should have been.
//!
//! Each element is quantised by this peer at most once per round: as part of
//! a contribution it sends in phase 1, or of the averaged span it owns in
//! phase 2. Its residual is the value it quantised minus what receivers
//! decode. Attempts recompute from the previous round's file, so a retried
//! attempt never adds a residual twice; the new file is renamed into place
//! only when the round succeeds, and a failed round leaves the old one.
//!
//! The file is a safetensors file of the gradient's layout (f32), with the
//! round and wire that wrote it. One of another layout or wire, or written by
//! the same round id (a round run twice would add its residual twice), is an
//! error, never reused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::link::OutBuf;
use super::wire::Wire;
use crate::tensors::{TensorFile, TensorWriter};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--residual needs a lossy --wire (bf16, q8 or ternary): f32 loses nothing")]
    LosslessWire,
    #[error("--residual {}: {what}", path.display())]
    Unfit { path: PathBuf, what: String },
    #[error(transparent)]
    Tensors(#[from] crate::tensors::Error),
}

/// The residual files of a round: the previous one (None: zeros) and the new one.
pub(super) struct Residual {
    pub new: TensorWriter,
    pub bufs: ResidualBufs,
}

/// What the coordinator and the writers read and write, shared.
#[derive(Clone)]
pub(super) struct ResidualBufs {
    old: Option<Arc<TensorFile>>,
    /// The new residual's f32 data region (disjoint regions per chunk, as for
    /// the output: see [`OutBuf`]).
    pub new: OutBuf,
}

impl Residual {
    /// Opens `path` (a missing file is zeros) for a round `round` of `input`'s
    /// layout on `wire`, and creates the new file beside it.
    pub fn open(path: &Path, input: &TensorFile, wire: Wire, round: &str) -> Result<Self, Error> {
        if wire == Wire::F32 {
            return Err(Error::LosslessWire);
        }
        let unfit = |what: String| Error::Unfit {
            path: path.to_path_buf(),
            what,
        };
        let old = if path.exists() {
            let f = TensorFile::open(path)?;
            f.check_same_layout(input)
                .map_err(|e| unfit(format!("another layout than --in: {e}")))?;
            let (was_wire, was_round) = (f.meta("wire")?, f.meta("round")?);
            if was_wire != wire.name() {
                return Err(unfit(format!(
                    "kept for --wire {was_wire}, not {}",
                    wire.name()
                )));
            }
            if was_round == round {
                return Err(unfit(format!(
                    "written by round {round} already (running a round twice would add its residual twice)"
                )));
            }
            if !f.flat_f32()?.iter().all(|x| x.is_finite()) {
                return Err(unfit("it holds NaN or Inf".into()));
            }
            Some(Arc::new(f))
        } else {
            None
        };
        let mut new = TensorWriter::create_with_room(
            path,
            &input.specs(),
            &BTreeMap::new(),
            256 + round.len(),
        )?;
        let region = new.flat_f32_mut();
        let new_buf = OutBuf {
            ptr: region.as_mut_ptr(),
            len: region.len(),
        };
        Ok(Residual {
            new,
            bufs: ResidualBufs { old, new: new_buf },
        })
    }

    /// Renames the new residual into place (the round succeeded).
    pub fn commit(mut self, wire: Wire, round: &str) -> Result<(), Error> {
        let meta = BTreeMap::from([
            ("round".to_string(), round.to_string()),
            ("wire".to_string(), wire.name().to_string()),
        ]);
        self.new.rewrite_metadata(&meta)?;
        self.new.commit_no_sync()?;
        Ok(())
    }
}

impl ResidualBufs {
    /// Quantises `values` (elements `start..` of the vector) with error
    /// feedback: `with` becomes values + the old residual, `decoded` what
    /// receivers will decode of it, and the new residual the difference.
    /// SAFETY: no one else may be writing the new residual's region.
    pub unsafe fn quantise(
        &self,
        wire: Wire,
        start: usize,
        values: &[f32],
        with: &mut Vec<f32>,
        decoded: &mut Vec<f32>,
    ) {
        with.clear();
        match &self.old {
            Some(f) => {
                let old = &f.flat_f32().expect("checked")[start..start + values.len()];
                with.extend(values.iter().zip(old).map(|(v, r)| v + r));
            }
            None => with.extend_from_slice(values),
        }
        decoded.clear();
        decoded.extend_from_slice(with);
        wire.round_trip(decoded);
        let new = self.new.region_mut(start, values.len());
        for ((n, w), d) in new.iter_mut().zip(with.iter()).zip(decoded.iter()) {
            *n = w - d;
        }
    }
}
