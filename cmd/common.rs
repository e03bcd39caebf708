//! Argument groups shared by several subcommands.

use dtrain::device::DeviceSpec;
use dtrain::model::Precision;
use dtrain::optim::Optim;
use dtrain::ranges::RangeList;
use dtrain::reduce::wire::Wire;
use dtrain::tokenize::Format;

/// Which sequences of a shard, how long, in what batches, where.
#[derive(clap::Args, Debug, Clone)]
#[cfg_attr(not(dtrain_torch), allow(dead_code))]
pub struct BatchArgs {
    /// Sequence length T (sequence k is tokens [k·T, k·T+T+1))
    #[arg(long, default_value_t = 1024)]
    pub seq_len: usize,
    /// Sequences per micro-batch
    #[arg(long, default_value_t = 8)]
    pub micro_batch: usize,
    /// Sequences to use, e.g. 0-63 or 1,5,9-12 [default: all whole sequences]
    #[arg(long)]
    pub sequences: Option<RangeList>,
    /// auto, cpu, cuda or cuda:N
    #[arg(long, default_value = "auto")]
    pub device: DeviceSpec,
    /// Compute precision of matmuls and attention
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    pub precision: PrecisionArg,
    /// ±1 projections per micro-batch gradient sketch in the receipt (0: none)
    #[arg(long, default_value_t = dtrain::sketch::DEFAULT_K)]
    pub sketch_k: usize,
}

#[cfg(dtrain_torch)]
impl BatchArgs {
    pub fn options(&self) -> crate::exit::Result<dtrain_torch::train::StepOptions> {
        Ok(dtrain_torch::train::StepOptions {
            seq_len: self.seq_len,
            micro_batch: self.micro_batch,
            sequences: self.sequences.clone(),
            device: dtrain_torch::device::resolve(self.device)?,
            precision: self.precision.into(),
            sketch_k: self.sketch_k,
            miner: None,
            round: None,
            inner: None,
        })
    }
}

/// DiLoCo's inner loop: train-step takes it, verify expects it (the same
/// flag names, so a validator passes the subnet's settings as miners do).
#[derive(clap::Args, Debug, Clone)]
#[cfg_attr(not(dtrain_torch), allow(dead_code))]
pub struct InnerArgs {
    /// DiLoCo: H inner optimizer steps over H equal batches of the sequences;
    /// the file is the pseudo-gradient θ₀ − θ_H
    #[arg(long, value_name = "H")]
    pub inner_steps: Option<usize>,
    /// Inner optimizer
    #[arg(long, value_enum, default_value_t = OptimArg::Adamw, requires = "inner_steps")]
    pub inner_optim: OptimArg,
    /// Inner learning rate
    #[arg(long, value_name = "LR", requires = "inner_steps")]
    pub inner_lr: Option<f64>,
    /// Inner weight decay (≥2-D parameters, as apply)
    #[arg(long, default_value_t = 0.1, requires = "inner_steps")]
    pub inner_weight_decay: f64,
    /// Inner gradient-norm clip (0: none)
    #[arg(long, default_value_t = 1.0, requires = "inner_steps")]
    pub inner_clip: f64,
    /// Inner Adam β₁
    #[arg(long, default_value_t = 0.9, requires = "inner_steps")]
    pub inner_beta1: f64,
    /// Inner Adam β₂
    #[arg(long, default_value_t = 0.95, requires = "inner_steps")]
    pub inner_beta2: f64,
    /// Inner Adam ε
    #[arg(long, default_value_t = 1e-8, requires = "inner_steps")]
    pub inner_eps: f64,
    /// Publish the loop's state after every K inner steps (and the last)
    /// [default: H/8 rounded up, so a validator can recompute an eighth]
    #[arg(long, value_name = "K", requires = "inner_steps")]
    pub state_every: Option<usize>,
}

/// The inner loop the flags ask for.
#[cfg_attr(not(dtrain_torch), allow(dead_code))]
pub struct InnerSettings {
    pub steps: usize,
    pub optim: dtrain::optim::ApplyOptions,
    pub state_every: usize,
}

#[cfg_attr(not(dtrain_torch), allow(dead_code))]
impl InnerArgs {
    /// The settings (None without --inner-steps); bad values are usage errors.
    pub fn settings(&self) -> crate::exit::Result<Option<InnerSettings>> {
        let Some(steps) = self.inner_steps else {
            return Ok(None);
        };
        if steps == 0 {
            return Err(crate::exit::bad_input!("--inner-steps must be at least 1"));
        }
        let Some(lr) = self.inner_lr.filter(|lr| *lr > 0.0 && lr.is_finite()) else {
            return Err(crate::exit::bad_input!(
                "--inner-steps needs --inner-lr greater than 0"
            ));
        };
        let state_every = self.state_every.unwrap_or(steps.div_ceil(8));
        if state_every == 0 {
            return Err(crate::exit::bad_input!("--state-every must be at least 1"));
        }
        let optim = dtrain::optim::ApplyOptions {
            optim: self.inner_optim.into(),
            lr,
            weight_decay: self.inner_weight_decay,
            clip: (self.inner_clip > 0.0).then_some(self.inner_clip),
            beta1: self.inner_beta1,
            beta2: self.inner_beta2,
            eps: self.inner_eps,
            ..Default::default()
        };
        Ok(Some(InnerSettings {
            steps,
            optim,
            state_every,
        }))
    }
}

/// Names the flag (and path) an input came from in its error, so a missing
/// file reads `--tokens nope.bin: No such file or directory`.
pub trait ForFlag<T> {
    fn for_flag(self, flag: &str, path: &std::path::Path) -> crate::exit::Result<T>;
}

impl<T, E: Into<crate::exit::CliError>> ForFlag<T> for Result<T, E> {
    fn for_flag(self, flag: &str, path: &std::path::Path) -> crate::exit::Result<T> {
        self.map_err(|e| e.into().context(format!("{flag} {}", path.display())))
    }
}

/// Writes `text` to `-o FILE` (a temporary renamed into place) or to stdout.
pub fn write_output(path: Option<&std::path::Path>, text: &str) -> crate::exit::Result<()> {
    match path {
        Some(path) => dtrain::fsio::write_atomic(path, text.as_bytes()).for_flag("-o", path),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

/// Refuses to write a new folder over an existing one unless `force`.
pub fn check_new_output(path: &std::path::Path, force: bool) -> crate::exit::Result<()> {
    if path.exists() && !force {
        return Err(crate::exit::CliError::new(
            crate::exit::Code::BadInput,
            format!(
                "-o {}: exists already; pass --force to replace it",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// A clap value enum for a library enum: the libraries carry no clap derives
/// (they are used without a command line), so each flag's choices are declared
/// here, once, with the conversion into the library's type.
macro_rules! value_enum {
    ($(#[$doc:meta])* $arg:ident => $lib:ident { $($(#[$vdoc:meta])* $v:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
        pub enum $arg {
            $($(#[$vdoc])* $v),+
        }

        impl From<$arg> for $lib {
            fn from(a: $arg) -> Self {
                match a {
                    $($arg::$v => $lib::$v),+
                }
            }
        }
    };
}

value_enum!(
    /// `--precision`: compute precision of the matmuls and attention
    PrecisionArg => Precision { F32, Bf16 }
);
value_enum!(
    /// `--optim`
    OptimArg => Optim {
        /// AdamW (torch.optim.AdamW)
        Adamw,
        /// LAMB (torch_optimizer.Lamb)
        Lamb,
        /// SGD with Nesterov momentum (DiLoCo's outer step; torch.optim.SGD(nesterov=True))
        Nesterov,
    }
);
value_enum!(
    /// `--wire`: how reduce encodes values on the wire
    WireArg => Wire {
        /// f32 as is
        F32,
        /// bfloat16: half the bytes
        Bf16,
        /// 8-bit blocks with an f32 scale: about a quarter
        Q8,
        /// {−s, 0, +s} per block of 64 with a bf16 scale: 1.875 bits a value (with --residual)
        Ternary,
    }
);
value_enum!(
    /// `--format`: how input text is cut into documents
    FormatArg => Format {
        /// One JSON object per line; its "text" field is a document.
        Jsonl,
        /// Paragraphs separated by blank lines are documents.
        Text,
        /// Every non-empty line is a document.
        Lines,
    }
);
