//! Linear sketches of gradients, tying a receipt's micro-batch claims to the
//! submitted gradient file.
//!
//! A sketch is the projection of a flat gradient g (the file's data region, in
//! order) on k pseudo-random ±1 vectors: sketchⱼ(g) = Σᵢ σ(i)·Rⱼ(i mod B)·gᵢ,
//! with σ a per-element random sign and R a k×B random sign matrix (B = 1024).
//! Every projection vector is ±1 everywhere; the structure makes a sketch two
//! passes over g on any device (multiply by σ, fold into B columns, one small
//! matrix-vector product), where k independent dense vectors would need k·P
//! random signs per micro-batch. σ and R come from blake3 keyed by
//! blake3("dtrain sketch v1" ‖ model hash ‖ shard hash), so a validator
//! regenerates them from the receipt alone, on CPU or GPU alike.
//!
//! Sketches are linear: the sequence-weighted sum of the micro-batches'
//! sketches equals the sketch of the whole gradient. A miner who submits a
//! gradient other than the sum of its micro-batches must misstate some
//! micro-batch's sketch, which a (sampled) recomputation then catches.

use rayon::prelude::*;

pub const BLOCK: usize = 1024;
pub const DEFAULT_K: usize = 32;

/// The projection of one (model, shard) pair.
#[derive(Clone)]
pub struct Sketcher {
    pub k: usize,
    key: [u8; 32],
}

impl Sketcher {
    pub fn new(model_hash: &str, shard_hash: &str, k: usize) -> Self {
        let mut h = blake3::Hasher::new_derive_key("dtrain sketch v1");
        h.update(model_hash.as_bytes());
        h.update(b"\0");
        h.update(shard_hash.as_bytes());
        Self {
            k,
            key: *h.finalize().as_bytes(),
        }
    }

    /// R, k×B signs as f32 (row-major).
    pub fn r_matrix(&self) -> Vec<f32> {
        let mut bytes = vec![0u8; (self.k * BLOCK).div_ceil(8)];
        blake3::Hasher::new_keyed(&self.key)
            .update(b"R")
            .finalize_xof()
            .fill(&mut bytes);
        (0..self.k * BLOCK)
            .map(|i| {
                if bytes[i / 8] >> (i % 8) & 1 == 1 {
                    1.0
                } else {
                    -1.0
                }
            })
            .collect()
    }

    /// σ for elements [start, start + out.len()) (start a multiple of BLOCK).
    pub fn sigma_into(&self, start: usize, out: &mut [f32]) {
        debug_assert_eq!(start % BLOCK, 0);
        for (b, chunk) in out.chunks_mut(BLOCK).enumerate() {
            let block = (start / BLOCK + b) as u64;
            let mut bits = [0u8; BLOCK / 8];
            let mut h = blake3::Hasher::new_keyed(&self.key);
            h.update(b"s");
            h.update(&block.to_le_bytes());
            h.finalize_xof().fill(&mut bits);
            for (i, o) in chunk.iter_mut().enumerate() {
                *o = if bits[i / 8] >> (i % 8) & 1 == 1 {
                    1.0
                } else {
                    -1.0
                };
            }
        }
    }

    /// The sketch of a flat vector, computed on the CPU in f64 (validators,
    /// gradient files).
    pub fn sketch_cpu(&self, g: &[f32]) -> Vec<f64> {
        const SPAN: usize = BLOCK * 256;
        let folded: Vec<f64> = g
            .par_chunks(SPAN)
            .enumerate()
            .map(|(c, part)| {
                let mut sigma = vec![0f32; part.len()];
                self.sigma_into(c * SPAN, &mut sigma);
                let mut v = vec![0f64; BLOCK];
                for (i, (&x, &s)) in part.iter().zip(&sigma).enumerate() {
                    v[i % BLOCK] += (x * s) as f64;
                }
                v
            })
            .reduce(
                || vec![0f64; BLOCK],
                |mut a, b| {
                    a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                    a
                },
            );
        let r = self.r_matrix();
        (0..self.k)
            .map(|j| {
                r[j * BLOCK..(j + 1) * BLOCK]
                    .iter()
                    .zip(&folded)
                    .map(|(&a, &b)| a as f64 * b)
                    .sum()
            })
            .collect()
    }
}

/// ‖a − b‖ / max(‖b‖, tiny): how far apart two sketches are.
pub fn rel_distance(a: &[f64], b: &[f64]) -> f64 {
    let d: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        .sqrt();
    let n: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    d / n.max(1e-30)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sketches_are_linear_and_keyed_by_the_shard() {
        let s = Sketcher::new("m", "s", 8);
        let n = 5000;
        let a: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let b: Vec<f32> = (0..n)
            .map(|i| ((i * 104729) % 997) as f32 / 997.0 - 0.5)
            .collect();
        let sa = s.sketch_cpu(&a);
        let sb = s.sketch_cpu(&b);
        let mix: Vec<f32> = a.iter().zip(&b).map(|(x, y)| 0.25 * x + 0.75 * y).collect();
        let sm = s.sketch_cpu(&mix);
        let lin: Vec<f64> = sa
            .iter()
            .zip(&sb)
            .map(|(x, y)| 0.25 * x + 0.75 * y)
            .collect();
        assert!(rel_distance(&sm, &lin) < 1e-6);
        // another shard, another projection
        assert!(rel_distance(&Sketcher::new("m", "t", 8).sketch_cpu(&a), &sa) > 0.5);
    }
}
