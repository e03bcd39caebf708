//! Data chunks: the header in front of each one's numbers, and the hashes
//! that name chunks, contributions, results and layouts in transcripts.
//!
//! Why hashes of hashes: a frame's MAC already hashes its payload once
//! ([`super::wire`]); the same per-chunk hash, combined in chunk order, names
//! a contribution or a result, so recording them costs no second pass over
//! the data, and a validator holding a miner's file recomputes them alone.

use super::peers::Plan;
use super::wire::{self, Wire};
use crate::tensors::TensorFile;

/// Data frame header inside the payload: phase, a pad byte, owner rank (u16),
/// chunk index (u32). Eight bytes, so the numbers after it stay 8-aligned in
/// the receive buffer and f32 chunks can be read in place.
pub(super) const DATA_HDR: usize = 8;

pub(super) fn data_header(phase: u8, owner: usize, chunk: usize) -> [u8; DATA_HDR] {
    let mut h = [0u8; DATA_HDR];
    h[0] = phase;
    h[2..4].copy_from_slice(&(owner as u16).to_le_bytes());
    h[4..8].copy_from_slice(&(chunk as u32).to_le_bytes());
    h
}

/// What a data frame's header says.
pub(super) struct DataHeader {
    pub phase: u8,
    pub owner: usize,
    pub chunk: usize,
}

impl DataHeader {
    /// The header in front of `payload`, or None when it is too short.
    pub fn parse(payload: &[u8]) -> Option<Self> {
        let h = payload.get(..DATA_HDR)?;
        Some(DataHeader {
            phase: h[0],
            owner: u16::from_le_bytes([h[2], h[3]]) as usize,
            chunk: u32::from_le_bytes(h[4..8].try_into().unwrap()) as usize,
        })
    }
}

/// blake3 of a data frame's payload: its header (`phase`, `owner`, chunk
/// `c`), then `values` in the wire format (f32 hashed in place; bf16 and q8
/// encoded into `buf`).
pub(super) fn chunk_hash(
    phase: u8,
    owner: usize,
    c: usize,
    values: &[f32],
    wire: Wire,
    buf: &mut Vec<u8>,
) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(&data_header(phase, owner, c));
    h.update(match wire {
        Wire::F32 => wire::f32_bytes(values),
        w => w.encode_to(values, buf),
    });
    *h.finalize().as_bytes()
}

/// The result hash a round's transcript records for an averaged vector: blake3
/// over the blake3 of each result chunk's phase-2 payload (`[2, owner rank
/// u16, chunk u32]` then the chunk in the wire format), spans in plan order,
/// chunks in order. Lets anyone check an output file against a transcript.
pub fn result_hash(values: &[f32], plan: &Plan, chunk: usize, wire: Wire) -> [u8; 32] {
    let mut top = blake3::Hasher::new();
    let mut buf = Vec::new();
    for (&owner, &(start, len)) in plan.owners.iter().zip(&plan.spans) {
        for (c, s) in (start..start + len).step_by(chunk.max(1)).enumerate() {
            let part = &values[s..(s + chunk).min(start + len)];
            top.update(&chunk_hash(2, owner, c, part, wire, &mut buf));
        }
    }
    *top.finalize().as_bytes()
}

/// The hash an owner records for one peer's contribution to its span: blake3
/// over the blake3 of each phase-1 payload (`[1, 0, owner rank u16, chunk
/// u32]` then the chunk in the wire format), in chunk order. A validator holding
/// the miner's gradient file recomputes it to see whether the miner sent its
/// gradient or something else.
pub fn contribution_hash(
    values: &[f32],
    owner: usize,
    start: usize,
    len: usize,
    chunk: usize,
    wire: Wire,
) -> [u8; 32] {
    let mut top = blake3::Hasher::new();
    let mut buf = Vec::new();
    for (c, s) in (start..start + len).step_by(chunk.max(1)).enumerate() {
        let part = &values[s..(s + chunk).min(start + len)];
        top.update(&chunk_hash(1, owner, c, part, wire, &mut buf));
    }
    *top.finalize().as_bytes()
}

pub(super) fn layout_digest(f: &TensorFile, model: &str, inner_steps: Option<usize>) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("dtrain reduce layout v1");
    h.update(model.as_bytes());
    if let Some(steps) = inner_steps {
        h.update(b"\0inner steps ");
        h.update(&(steps as u64).to_le_bytes());
    }
    for e in f.entries() {
        h.update(e.spec.name.as_bytes());
        h.update(&[0]);
        for d in &e.spec.shape {
            h.update(&(*d as u64).to_le_bytes());
        }
    }
    *h.finalize().as_bytes()
}
