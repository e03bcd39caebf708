//! Sketches computed where the gradient is: σ and R resident on the training
//! device, the same projection as [`dtrain::sketch::Sketcher::sketch_cpu`].

use dtrain::sketch::{Sketcher, BLOCK};
use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

/// σ and R on a device, for sketching gradients where they are computed.
pub fn on_device(s: &Sketcher, n: usize, device: Device) -> DeviceSketcher {
    let padded = n.next_multiple_of(BLOCK);
    let mut sigma = vec![0f32; padded];
    sigma
        .par_chunks_mut(BLOCK * 256)
        .enumerate()
        .for_each(|(c, part)| s.sigma_into(c * BLOCK * 256, part));
    let sigma = Tensor::from_slice(&sigma).to_device(device);
    let r = Tensor::from_slice(&s.r_matrix())
        .view([s.k as i64, BLOCK as i64])
        .to_device(device);
    DeviceSketcher {
        sigma,
        r,
        n,
        padded,
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
        to_host(&self.sketch_on_device(flat))
    }

    /// The sketch as a (k,) f64 tensor left on the device: no host sync, so a
    /// training loop can queue the next micro-batch while this one runs.
    pub fn sketch_on_device(&self, flat: &Tensor) -> Tensor {
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
        self.r.mv(&folded).to_kind(Kind::Double)
    }
}

/// A sketch tensor read back to the host.
pub fn to_host(sketch: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(sketch.to_device(Device::Cpu)).expect("a 1-D tensor")
}

#[cfg(test)]
mod tests {
    use super::*;
    use dtrain::sketch::rel_distance;

    #[test]
    fn cpu_and_device_sketches_agree() {
        let s = Sketcher::new("m", "s", 8);
        let n = 5000;
        let a: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let sa = s.sketch_cpu(&a);
        let sd = on_device(&s, n, Device::Cpu).sketch(&Tensor::from_slice(&a));
        assert!(rel_distance(&sd, &sa) < 1e-5, "{sd:?} vs {sa:?}");
    }
}
