//! verify for DiLoCo pseudo-gradients: the checks that need no model.
//!
//! - **receipt** (inner claims): the receipt's inner steps, optimizer
//!   settings and state spacing are the subnet's (the validator's flags), it
//!   lists a state after every k-th step and the last, and its micro-batches
//!   are the H equal batches' in order;
//! - **inner state**: a loop carried from an earlier round starts from θ₀
//!   and the moments the miner's previous receipt ended with;
//! - **pseudo-gradient**: the file is θ₀ minus the last published state's
//!   parameters, bit for bit (the f32 subtraction the miner does);
//! - the torch crate then recomputes sampled segments from their published
//!   start state (see `dtrain_torch::verify`), using [`Verification::segment_start`]
//!   and [`Verification::segment_end`] here.

use std::ops::Range;
use std::path::Path;

use super::{Finding, Verification};
use crate::inner::{InnerClaim, InnerOptim, State, StateCommit};
use crate::optim::MemoryState;
use crate::receipt::Receipt;

/// The inner loop the subnet expects, and where the miner's states are.
pub struct ExpectedInner<'a> {
    pub steps: usize,
    pub optim: InnerOptim,
    pub state_every: usize,
    /// The folder of the miner's published states.
    pub states: &'a Path,
    /// The miner's receipt of the previous round (for a carried inner state).
    pub previous: Option<&'a Receipt>,
}

/// A segment's start: the published state (None: a fresh optimizer on θ₀).
pub struct SegmentStart {
    pub theta: Vec<f32>,
    pub memory: Option<MemoryState>,
}

impl Verification<'_> {
    /// Why the receipt's DiLoCo claims are not what the round expects (None: they are).
    pub(super) fn inner_claims(&self) -> Option<String> {
        let r = self.inp.receipt;
        let (want, claim) = match (&self.inp.inner, r.inner_steps, &r.inner) {
            (None, None, None) => return None,
            (None, Some(h), _) => return Some(format!(
                "it claims {h} inner steps (a DiLoCo pseudo-gradient); this round expects a gradient (verify --inner-steps checks DiLoCo work)"
            )),
            (Some(want), None, _) => {
                return Some(format!(
                    "a plain gradient; this round expects {} inner steps",
                    want.steps
                ))
            }
            (_, _, None) => return Some("it claims inner steps but lists no inner loop".into()),
            (_, None, Some(_)) => return Some("it lists an inner loop but no inner steps".into()),
            (Some(want), Some(_), Some(claim)) => (want, claim),
        };
        if r.inner_steps != Some(want.steps) {
            return Some(format!(
                "it claims {} inner steps; the round's are {}",
                r.inner_steps.unwrap_or(0),
                want.steps
            ));
        }
        if claim.optim != want.optim {
            return Some(format!(
                "its inner optimizer is {:?}; the round's is {:?}",
                claim.optim, want.optim
            ));
        }
        if claim.state_every != want.state_every {
            return Some(format!(
                "it publishes a state every {} inner steps; the round asks for every {}",
                claim.state_every, want.state_every
            ));
        }
        let listed: Vec<usize> = claim.states.iter().map(|s| s.inner_step).collect();
        if listed != crate::inner::checkpoints(want.steps, want.state_every) {
            return Some(format!(
                "it lists states after inner steps {listed:?}, not after every {} and the last",
                want.state_every
            ));
        }
        if !r.sequences.len().is_multiple_of(want.steps as u64) {
            return Some(format!(
                "its {} sequences do not split into {} equal inner batches",
                r.sequences.len(),
                want.steps
            ));
        }
        None
    }

    fn claim(&self) -> Option<(&ExpectedInner<'_>, &InnerClaim)> {
        Some((self.inp.inner.as_ref()?, self.inp.receipt.inner.as_ref()?))
    }

    /// The H inner batches' sequences (empty for a plain gradient).
    pub fn inner_batches(&self) -> Vec<Vec<u64>> {
        let r = self.inp.receipt;
        let Some((want, _)) = self.claim() else {
            return Vec::new();
        };
        let seqs: Vec<u64> = r.sequences.iter().collect();
        let per = (seqs.len() / want.steps).max(1);
        seqs.chunks(per).map(<[u64]>::to_vec).collect()
    }

    /// Micro-batches per inner step.
    pub fn micro_batches_per_step(&self) -> usize {
        let r = self.inp.receipt;
        let per = r.sequences.len() as usize / self.inp.inner.as_ref().map_or(1, |w| w.steps);
        per.div_ceil(r.micro_batch.max(1))
    }

    /// DiLoCo: the micro-batches are the inner batches' in order, each cut
    /// by the receipt's micro-batch size (a plain gradient: always true).
    pub(super) fn inner_structure_ok(&self) -> bool {
        if self.claim().is_none() {
            return true;
        }
        let r = self.inp.receipt;
        let want: Vec<Vec<u64>> = self
            .inner_batches()
            .iter()
            .flat_map(|b| b.chunks(r.micro_batch.max(1)).map(<[u64]>::to_vec))
            .collect();
        want == self.micro_batch_sequences()
    }

    /// The model's parameters θ₀ (flat, file order).
    fn theta0(&self) -> Result<Vec<f32>, crate::model::Error> {
        let ckpt = self.inp.ckpt;
        let mut theta = Vec::with_capacity(ckpt.config.num_params());
        for i in 0..ckpt.config.param_shapes().len() {
            theta.extend_from_slice(&ckpt.param(i)?);
        }
        Ok(theta)
    }

    /// Reads the published state `commit`; a defect is a failed check named `check`.
    fn published(&mut self, commit: &StateCommit, check: &str) -> Option<State> {
        let (want, claim) = self.claim()?;
        let path = crate::inner::state_path(want.states, commit.inner_step);
        let optim = claim.optim.optim;
        match crate::inner::read_state(&path, &self.inp.ckpt.specs(), optim, commit) {
            Ok(s) => Some(s),
            Err(e) => {
                self.record(check, Finding::Fail(e.to_string()));
                None
            }
        }
    }

    /// A carried inner state starts from θ₀ and the moments the miner's
    /// previous receipt (signed by the same key) ended with. Returns whether
    /// the loop's start is sound (a fresh loop always is).
    pub fn inner_state(&mut self) -> Result<bool, crate::model::Error> {
        let Some((want, claim)) = self.claim() else {
            return Ok(true);
        };
        let Some(initial) = claim.initial.clone() else {
            return Ok(true);
        };
        let previous = want.previous;
        let ended = previous.and_then(|p| {
            let same_key = p.pubkey.is_some() && p.pubkey == self.inp.receipt.pubkey;
            let signed = p.check_signature(self.inp.pubkey.as_ref()).is_ok();
            let last = p.inner.as_ref()?.states.last()?;
            (same_key && signed).then(|| last.moments.clone())
        });
        let why = match ended {
            None if previous.is_none() => Some(
                "it carries its inner state from an earlier round: verify needs --previous-receipt"
                    .to_string(),
            ),
            None => Some("the previous receipt is not the miner's or lists no states".into()),
            Some(m) if m != initial.moments => {
                Some("its carried moments are not the ones its previous receipt ended with".into())
            }
            Some(_) => None,
        };
        if let Some(why) = why {
            return Ok(self.record("inner state", Finding::Fail(why)));
        }
        let Some(start) = self.published(&initial, "inner state") else {
            return Ok(false);
        };
        let finding = if start.theta == self.theta0()? {
            Finding::Pass("carried from the previous round; starts from θ₀".into())
        } else {
            Finding::Fail("the carried state's parameters are not θ₀".into())
        };
        Ok(self.record("inner state", finding))
    }

    /// The file is θ₀ minus the last published state's parameters, bit for bit.
    pub fn pseudo_gradient(&mut self, flat: &[f32]) -> Result<bool, crate::model::Error> {
        let Some((_, claim)) = self.claim() else {
            return Ok(true);
        };
        let Some(last) = claim.states.last().cloned() else {
            return Ok(self.record("pseudo-gradient", Finding::Fail("no states".into())));
        };
        let Some(end) = self.published(&last, "pseudo-gradient") else {
            return Ok(false);
        };
        let theta0 = self.theta0()?;
        let differ = theta0
            .iter()
            .zip(&end.theta)
            .zip(flat)
            .filter(|((a, b), g)| (*a - *b).to_bits() != g.to_bits())
            .count();
        let finding = if differ == 0 {
            Finding::Pass(format!(
                "θ₀ − θ_{} of the published state, bit for bit",
                last.inner_step
            ))
        } else {
            Finding::Fail(format!(
                "{differ} values are not θ₀ − θ_{} of the published state",
                last.inner_step
            ))
        };
        Ok(self.record("pseudo-gradient", finding))
    }

    /// How many segments the inner loop has.
    pub fn segment_count(&self) -> usize {
        self.claim().map_or(0, |(want, _)| {
            crate::inner::segments(want.steps, want.state_every).len()
        })
    }

    /// The segments to recompute (inner steps [start, end)): all, or K
    /// chosen with the validator's own randomness (`--sample K`).
    pub fn chosen_segments(&self) -> Vec<Range<usize>> {
        let Some((want, _)) = self.claim() else {
            return Vec::new();
        };
        let all = crate::inner::segments(want.steps, want.state_every);
        match self.inp.sample {
            Some(k) if k < all.len() => super::pick(all.len(), k.max(1))
                .into_iter()
                .map(|i| all[i].clone())
                .collect(),
            _ => all,
        }
    }

    /// The state a segment starts from: θ₀ with fresh (or carried) moments
    /// for the first, else the published state (None: it failed a check).
    pub fn segment_start(
        &mut self,
        segment: &Range<usize>,
    ) -> Result<Option<SegmentStart>, crate::model::Error> {
        let Some((_, claim)) = self.claim() else {
            return Ok(None);
        };
        let commit = if segment.start == 0 {
            claim.initial.clone()
        } else {
            claim
                .states
                .iter()
                .find(|s| s.inner_step == segment.start)
                .cloned()
        };
        Ok(match commit {
            None if segment.start == 0 => Some(SegmentStart {
                theta: self.theta0()?,
                memory: None,
            }),
            None => None,
            Some(c) => self.published(&c, "recomputation").map(|s| SegmentStart {
                theta: s.theta,
                memory: Some(s.memory),
            }),
        })
    }

    /// How far a recomputed segment's end (`theta`, `memory`) is from the
    /// published state after `segment`: parameters relative to the
    /// segment's displacement from `start`, moments relative to their norm.
    /// None when the published state failed a check.
    pub fn segment_end(
        &mut self,
        segment: &Range<usize>,
        start: &[f32],
        (theta, memory): (&[f32], &MemoryState),
    ) -> Option<f64> {
        let (_, claim) = self.claim()?;
        let commit = claim
            .states
            .iter()
            .find(|s| s.inner_step == segment.end)?
            .clone();
        let end = self.published(&commit, "recomputation")?;
        let mut diff = 0f64;
        let mut moved = 0f64;
        for ((mine, theirs), s) in theta.iter().zip(&end.theta).zip(start) {
            diff += ((mine - theirs) as f64).powi(2);
            moved += ((theirs - s) as f64).powi(2);
        }
        let params = diff.sqrt() / moved.sqrt().max(1e-30);
        let (mut diff, mut norm) = (0f64, 0f64);
        for (mine, theirs) in memory.tensors().iter().zip(end.memory.tensors()) {
            for (a, b) in mine.iter().zip(theirs) {
                diff += ((a - b) as f64).powi(2);
                norm += (*b as f64).powi(2);
            }
        }
        let moments = if memory.step == end.memory.step {
            diff.sqrt() / norm.sqrt().max(1e-30)
        } else {
            f64::INFINITY
        };
        Some(params.max(moments))
    }
}
