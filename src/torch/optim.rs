//! AdamW where the model is, for DiLoCo's inner loop on a GPU.
//!
//! `apply`'s optimizer ([`dtrain::optim::step_in_memory`]) runs on the host:
//! exact, shared with the CPU path and with verify. On a CUDA device that would
//! mean copying 124M parameters and their gradient across PCIe and stepping
//! them on the CPU after every inner step, several times the step's own
//! compute. Here the parameters, both moments and the step count stay in
//! device memory as flat f32 tensors; the host reads the gradient norm (one
//! scalar: clipping and the finite check need it) and reads the whole state
//! back only when a state is published. The arithmetic is `apply`'s AdamW
//! (torch's formula: decay on ≥2-D tensors, bias-corrected moments), so the two
//! agree to f32 rounding, not bit for bit: verify's segment tolerance covers it.
//! tch exposes neither `_fused_adamw_` nor the `_foreach_` kernels, so the
//! update is a handful of whole-model elementwise kernels over the flat buffers.

use tch::{Device, Kind, Tensor};

use dtrain::optim::{ApplyOptions, MemoryState, Optim};
use dtrain::tensors::TensorSpec;

use crate::train::{Engine, Error, LoopState};

/// Whether the inner loop steps on the device: AdamW on CUDA. LAMB and
/// Nesterov, and any CPU run, step on the host exactly as `apply` does.
pub fn steps_on_device(device: Device, optim: &ApplyOptions) -> bool {
    device.is_cuda() && optim.optim == Optim::Adamw
}

/// AdamW state resident on a device: flat parameters and moments in file order.
pub struct DeviceAdamw {
    theta: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    /// 1 for the ≥2-D tensors weight decay applies to, 0 for the rest.
    decays: Tensor,
    step: u64,
}

impl DeviceAdamw {
    /// Moves the loop's state (parameters, and moments when it has them) to `device`.
    pub fn new(device: Device, specs: &[TensorSpec], state: &LoopState) -> Result<Self, Error> {
        let flat = |v: &[f32]| Tensor::f_from_slice(v).and_then(|t| t.f_to_device(device));
        let theta = flat(&state.theta)?;
        let n = theta.numel() as i64;
        let (exp_avg, exp_avg_sq, step) = match &state.memory {
            Some(m) => {
                let parts = m.tensors();
                let (first, second) = parts.split_at(specs.len());
                let cat = |p: &[&[f32]]| flat(&p.concat());
                (cat(first)?, cat(second)?, m.step)
            }
            None => {
                let zeros = || Tensor::zeros([n], (Kind::Float, device));
                (zeros(), zeros(), 0)
            }
        };
        let decays: Vec<f32> = specs
            .iter()
            .flat_map(|s| {
                let d = if s.shape.len() >= 2 { 1.0 } else { 0.0 };
                std::iter::repeat_n(d, s.numel())
            })
            .collect();
        Ok(Self {
            theta,
            exp_avg,
            exp_avg_sq,
            decays: flat(&decays)?,
            step,
        })
    }

    /// One AdamW step with the flat gradient `grad` (on the device).
    pub fn step(&mut self, grad: &Tensor, opts: &ApplyOptions) -> Result<(), Error> {
        let _guard = tch::no_grad_guard();
        let gnorm = grad.square().sum(Kind::Double).sqrt().double_value(&[]);
        if !gnorm.is_finite() {
            return Err(dtrain::optim::Error::NonFinite.into());
        }
        let clip_scale = dtrain::optim::clip_scale(opts.clip, gnorm);
        self.step += 1;
        let lr = opts
            .schedule
            .lr(opts.lr, opts.epoch.unwrap_or(self.step - 1));
        let (b1, b2) = (opts.beta1, opts.beta2);
        let g = grad.to_kind(Kind::Float) * clip_scale;
        let _ = self.exp_avg.g_mul_scalar_(b1);
        let _ = self.exp_avg.g_add_(&(&g * (1.0 - b1)));
        let _ = self.exp_avg_sq.g_mul_scalar_(b2);
        let _ = self.exp_avg_sq.g_add_(&(g.square() * (1.0 - b2)));
        let bias1 = 1.0 - b1.powi(self.step as i32);
        let bias2_sqrt = (1.0 - b2.powi(self.step as i32)).sqrt();
        let denom = self.exp_avg_sq.sqrt() / bias2_sqrt + opts.eps;
        let decay = (&self.decays * -(lr * opts.weight_decay)) + 1.0;
        let _ = self.theta.g_mul_(&decay);
        let _ = self.theta.g_sub_(&((&self.exp_avg / denom) * (lr / bias1)));
        if self.theta.isfinite().all().int64_value(&[]) != 1 {
            return Err(dtrain::optim::Error::NonFinite.into());
        }
        Ok(())
    }

    /// Copies the parameters into the engine's model (device to device).
    pub fn load_into(&self, engine: &mut Engine) -> Result<(), Error> {
        engine.set_params_from(&self.theta)
    }

    /// Reads parameters and moments back into `state` (as `step_in_memory` leaves it).
    pub fn read_back(&self, specs: &[TensorSpec], state: &mut LoopState) -> Result<(), Error> {
        let host = |t: &Tensor| -> Result<Vec<f32>, Error> {
            Ok(Vec::<f32>::try_from(t.f_to_device(Device::Cpu)?)?)
        };
        state.theta = host(&self.theta)?;
        let mut tensors = Vec::with_capacity(2 * specs.len());
        for moment in [host(&self.exp_avg)?, host(&self.exp_avg_sq)?] {
            let mut off = 0;
            for s in specs {
                tensors.push(moment[off..off + s.numel()].to_vec());
                off += s.numel();
            }
        }
        state.memory = Some(MemoryState::from_tensors(
            Optim::Adamw,
            specs.len(),
            self.step,
            tensors,
        ));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dtrain::tensors::DType;

    fn specs() -> Vec<TensorSpec> {
        vec![
            TensorSpec::new("w", DType::F32, &[8, 16]),
            TensorSpec::new("b", DType::F32, &[16]),
            TensorSpec::new("e", DType::F32, &[4, 4, 2]),
        ]
    }

    /// Deterministic values in [-scale/2, scale/2).
    fn values(n: usize, seed: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7919 + seed * 104729) % 1000) as f32 / 1000.0 - 0.5)
            .map(|v| v * scale)
            .collect()
    }

    #[test]
    fn device_adamw_matches_apply_over_steps_with_clipping_and_decay() {
        let specs = specs();
        let n: usize = specs.iter().map(TensorSpec::numel).sum();
        let opts = ApplyOptions {
            optim: Optim::Adamw,
            lr: 1e-2,
            clip: Some(0.5),
            ..ApplyOptions::default()
        };
        let mut host = LoopState {
            theta: values(n, 0, 1.0),
            memory: None,
        };
        let mut device = DeviceAdamw::new(Device::Cpu, &specs, &host).unwrap();
        for step in 1..=4 {
            let grad = values(n, step, if step == 2 { 10.0 } else { 0.1 });
            dtrain::optim::step_in_memory(&specs, &mut host.theta, &grad, &mut host.memory, &opts)
                .unwrap();
            device.step(&Tensor::from_slice(&grad), &opts).unwrap();
        }
        let mut read = LoopState {
            theta: Vec::new(),
            memory: None,
        };
        device.read_back(&specs, &mut read).unwrap();
        let worst = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs() / y.abs().max(1e-3))
                .fold(0f32, f32::max)
        };
        assert!(worst(&read.theta, &host.theta) < 1e-5);
        let (h, d) = (host.memory.as_ref().unwrap(), read.memory.as_ref().unwrap());
        assert_eq!(h.step, d.step);
        for (a, b) in d.tensors().iter().zip(h.tensors()) {
            assert!(worst(a, b) < 1e-5);
        }
        // a carried state continues where it stopped
        let again = DeviceAdamw::new(Device::Cpu, &specs, &read).unwrap();
        assert_eq!(again.step, 4);
        let nan = Tensor::from_slice(&vec![f32::NAN; n]);
        assert!(DeviceAdamw::new(Device::Cpu, &specs, &read)
            .unwrap()
            .step(&nan, &opts)
            .is_err());
    }
}
