//! GPT-2 in tch: pre-LayerNorm blocks, learned positions, tanh GELU, tied
//! embeddings, causal attention through `scaled_dot_product_attention` (so CUDA
//! uses the flash / memory-efficient kernels).
//!
//! Parameters are plain tensors in the canonical order of
//! [`Config::param_names`]; Conv1D weights are [in, out], so every projection is
//! one `addmm(bias, x, W)` with no transpose. With [`Precision::Bf16`] the matmul
//! inputs are cast to bf16 inside the graph (what autocast does), the residual
//! stream, LayerNorms and the loss stay f32, and gradients reach the f32 master
//! weights through the casts.

use tch::{Kind, Tensor};

use dtrain::model::config::{Config, LAYER_PARAMS};
pub use dtrain::model::Precision;

pub struct Gpt {
    pub config: Config,
    pub params: Vec<Tensor>,
    pub precision: Precision,
    /// When set, each forward-backward synchronises the device around its
    /// phases and adds their times here (train-step --benchmark --profile).
    pub profile: Option<PhaseTimes>,
}

/// Where a forward-backward's time goes, summed over calls (seconds).
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct PhaseTimes {
    /// Embeddings and the transformer blocks, forward.
    pub trunk_forward: f64,
    /// The fused LM head and loss, forward and backward.
    pub head: f64,
    /// The blocks and embeddings, backward (autograd).
    pub trunk_backward: f64,
}

/// A stopwatch that waits for the device before each reading.
struct PhaseClock {
    device: tch::Device,
    last: std::time::Instant,
}

impl PhaseClock {
    fn start(device: tch::Device) -> Self {
        sync(device);
        Self {
            device,
            last: std::time::Instant::now(),
        }
    }

    /// Seconds since the last reading, once the device is done.
    fn lap(&mut self) -> f64 {
        sync(self.device);
        let now = std::time::Instant::now();
        let dt = (now - self.last).as_secs_f64();
        self.last = now;
        dt
    }
}

/// Waits for a CUDA device's queued work (nothing on a CPU).
pub fn sync(device: tch::Device) {
    if let tch::Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

impl Gpt {
    pub fn new(config: Config, params: Vec<Tensor>, precision: Precision) -> Self {
        assert_eq!(params.len(), 2 + 12 * config.n_layer + 2);
        Self {
            config,
            params,
            precision,
            profile: None,
        }
    }

    fn cast(&self, t: &Tensor) -> Tensor {
        match self.precision {
            Precision::F32 => t.shallow_clone(),
            Precision::Bf16 => t.to_kind(Kind::BFloat16),
        }
    }

    /// x (N, in) @ W (in, out) + b, in the compute precision.
    fn linear(&self, x: &Tensor, w: &Tensor, b: &Tensor) -> Tensor {
        self.cast(b).addmm(&self.cast(x), &self.cast(w))
    }

    fn layer_norm(&self, x: &Tensor, w: &Tensor, b: &Tensor) -> Tensor {
        x.layer_norm(
            [self.config.n_embd as i64],
            Some(w),
            Some(b),
            self.config.layer_norm_epsilon,
            true,
        )
    }

    /// Final hidden states (B·T, C), f32.
    fn hidden(&self, idx: &Tensor) -> Tensor {
        let (b, t) = idx.size2().expect("idx is (B, T)");
        let c = self.config.n_embd as i64;
        let nh = self.config.n_head as i64;
        let hd = c / nh;
        let p = &self.params;
        let pos = Tensor::arange(t, (Kind::Int64, idx.device()));
        let mut x = Tensor::embedding(&p[0], idx, -1, false, false)
            + Tensor::embedding(&p[1], &pos, -1, false, false);
        x = x.view([b * t, c]);
        for layer in 0..self.config.n_layer {
            let q = &p[2 + layer * LAYER_PARAMS.len()..2 + (layer + 1) * LAYER_PARAMS.len()];
            let h = self.layer_norm(&x, &q[0], &q[1]);
            let qkv = self
                .linear(&h, &q[2], &q[3])
                .view([b, t, 3, nh, hd])
                .permute([2, 0, 3, 1, 4]);
            let (qh, kh, vh) = (qkv.get(0), qkv.get(1), qkv.get(2));
            let y = Tensor::scaled_dot_product_attention::<Tensor>(
                &qh, &kh, &vh, None, 0.0, true, None, false,
            );
            let y = y.transpose(1, 2).contiguous().view([b * t, c]);
            x = x.g_add(&self.linear(&y, &q[4], &q[5])); // out of place: layer_norm saved x
            let h = self.layer_norm(&x, &q[6], &q[7]);
            let h = self.linear(&h, &q[8], &q[9]).gelu("tanh");
            x = x.g_add(&self.linear(&h, &q[10], &q[11]));
        }
        let n = p.len();
        self.layer_norm(&x, &p[n - 2], &p[n - 1])
    }

    /// Logits (B·T, V), f32.
    pub fn logits(&self, idx: &Tensor) -> Tensor {
        let h = self.hidden(idx);
        self.cast(&h)
            .matmul(&self.cast(&self.params[0]).tr())
            .to_kind(Kind::Float)
    }

    /// Mean cross-entropy of predicting `targets` (B, T) from `idx` (B, T).
    pub fn loss(&self, idx: &Tensor, targets: &Tensor) -> Tensor {
        self.logits(idx).cross_entropy_loss::<Tensor>(
            &targets.reshape([-1]),
            None,
            tch::Reduction::Mean,
            -100,
            0.0,
        )
    }

    /// Forward and backward of the mean cross-entropy, adding `scale` × its
    /// gradient to the parameters' `.grad`; returns the (detached) mean loss.
    ///
    /// The LM head and the loss are fused and chunked: for each block of rows
    /// the logits are computed, turned into softmax − one-hot in place, and
    /// multiplied back into the gradients of the hidden states and of the tied
    /// embedding, so the (tokens × 50257) logits and their gradient are never
    /// materialised whole (on GPT-2 at 16×1024 tokens that is 3.3 GB twice).
    /// The rest of the network is backpropagated by autograd from those hidden
    /// state gradients.
    pub fn forward_backward(&mut self, idx: &Tensor, targets: &Tensor, scale: f64) -> Tensor {
        let mut clock = self
            .profile
            .as_ref()
            .map(|_| PhaseClock::start(idx.device()));
        let h = self.hidden(idx);
        let n = h.size()[0];
        let trunk = clock.as_mut().map(PhaseClock::lap);
        let (dh, dw, loss_sum) = tch::no_grad(|| self.head(&h, targets, scale));
        let head = clock.as_mut().map(PhaseClock::lap);
        (h * dh.to_kind(Kind::Float)).sum(Kind::Float).backward();
        tch::no_grad(|| {
            let mut g = self.params[0].grad();
            let _ = g.g_add_(&dw);
        });
        if let (Some(p), Some(c)) = (self.profile.as_mut(), clock.as_mut()) {
            p.trunk_forward += trunk.unwrap_or_default();
            p.head += head.unwrap_or_default();
            p.trunk_backward += c.lap();
        }
        loss_sum / n as f64
    }

    /// The fused LM head and loss over the hidden states `h`, in row blocks:
    /// (d loss / d h, d loss / d wte, Σ token losses).
    fn head(&self, h: &Tensor, targets: &Tensor, scale: f64) -> (Tensor, Tensor, Tensor) {
        let n = h.size()[0];
        let targets = targets.reshape([-1]);
        let hd = self.cast(&h.detach());
        let w = self.cast(&self.params[0].detach());
        let v = w.size()[0];
        let dh = Tensor::empty([n, self.config.n_embd as i64], (hd.kind(), hd.device()));
        let mut dw = Tensor::zeros([v, self.config.n_embd as i64], (Kind::Float, hd.device()));
        let mut loss_sum = Tensor::zeros([], (Kind::Float, hd.device()));
        // f32 log-probabilities per block: 1 GB on a GPU (four blocks at 16×1024
        // tokens, so the wte gradient is accumulated four times, not thirteen);
        // 8 MB on a CPU (measured best there: it stays in cache)
        let budget: i64 = if hd.device().is_cuda() {
            1 << 28
        } else {
            1 << 21
        };
        let rows = (budget / v).clamp(1, n);
        let mut start = 0;
        while start < n {
            let r = rows.min(n - start);
            let hc = hd.narrow(0, start, r);
            let tc = targets.narrow(0, start, r).unsqueeze(1);
            // one kernel from the bf16 logits to f32 log-probabilities
            let mut logp = hc.mm(&w.tr()).log_softmax(1, Kind::Float);
            loss_sum -= logp.gather(1, &tc, false).sum(Kind::Float);
            // softmax − one-hot, scaled: d(scale · mean loss)/d logits
            let _ = logp.exp_();
            let _ = logp.scatter_add_(
                1,
                &tc,
                &Tensor::full([r, 1], -1.0, (Kind::Float, hd.device())),
            );
            let _ = logp.g_mul_scalar_(scale / n as f64);
            let g = self.cast(&logp);
            dh.narrow(0, start, r).copy_(&g.mm(&w));
            dw += g.tr().mm(&hc).to_kind(Kind::Float);
            start += r;
        }
        (dh, dw, loss_sum)
    }
}
