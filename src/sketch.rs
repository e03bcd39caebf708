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
use tch::{Device, Kind, Tensor};

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
    fn sigma_into(&self, start: usize, out: &mut [f32]) {
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

    /// σ and R on a device, for sketching gradients where they are computed.
    pub fn on_device(&self, n: usize, device: Device) -> DeviceSketcher {
        let padded = n.next_multiple_of(BLOCK);
        let mut sigma = vec![0f32; padded];
        sigma
            .par_chunks_mut(BLOCK * 256)
            .enumerate()
            .for_each(|(c, part)| self.sigma_into(c * BLOCK * 256, part));
        let sigma = Tensor::from_slice(&sigma).to_device(device);
        let r = Tensor::from_slice(&self.r_matrix())
            .view([self.k as i64, BLOCK as i64])
            .to_device(device);
        DeviceSketcher {
            sigma,
            r,
            n,
            padded,
        }
    }
}

/// σ and R resident on the training device.
pub struct DeviceSketcher {
    sigma: Tensor,
    r: Tensor,
    n: usize,
    padded: usize,
}

impl DeviceSketcher {
    /// The sketch of a flat f32 gradient tensor of n elements, as f64 on the CPU.
    pub fn sketch(&self, flat: &Tensor) -> Vec<f64> {
        let _g = tch::no_grad_guard();
        let pad = (self.padded - self.n) as i64;
        let x = if pad > 0 {
            flat.constant_pad_nd([0, pad])
        } else {
            flat.shallow_clone()
        };
        let folded = (x * &self.sigma).view([-1, BLOCK as i64]).sum_dim_intlist(
            [0i64].as_slice(),
            false,
            Kind::Float,
        );
        let s = self
            .r
            .mv(&folded)
            .to_kind(Kind::Double)
            .to_device(Device::Cpu);
        Vec::<f64>::try_from(s).expect("a 1-D tensor")
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
    fn cpu_and_device_sketches_agree_and_are_linear() {
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
        let dev = s.on_device(n, Device::Cpu);
        let sd = dev.sketch(&Tensor::from_slice(&a));
        assert!(rel_distance(&sd, &sa) < 1e-5, "{sd:?} vs {sa:?}");
        // another shard, another projection
        assert!(rel_distance(&Sketcher::new("m", "t", 8).sketch_cpu(&a), &sa) > 0.5);
    }
}
