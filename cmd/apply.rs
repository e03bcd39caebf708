use std::path::PathBuf;

use crate::exit::{bad_input, Result};
use dtrain::model::Checkpoint;
use dtrain::optim::{ApplyOptions, Schedule};
use dtrain::tensors::TensorFile;

use crate::common::{check_new_output, ForFlag, OptimArg};

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum ScheduleKind {
    Constant,
    WarmupCosine,
}

#[derive(clap::Args, Debug)]
#[command(after_long_help = "Example:
  dtrain apply --model model-0 --grad avg.safetensors --optim adamw --lr 3e-3 -o model-1

The same model, gradient and options give a bit-identical checkpoint on the same device kind, so every miner that applies the round's average ends with the same model hash.")]
pub struct ApplyArgs {
    /// Checkpoint folder to step from
    #[arg(long)]
    model: PathBuf,
    /// The (averaged) gradient
    #[arg(long)]
    grad: PathBuf,
    /// The optimizer (its state travels in the checkpoint)
    #[arg(long, value_enum, default_value_t = OptimArg::Lamb)]
    optim: OptimArg,
    /// Peak learning rate
    #[arg(long)]
    lr: f64,
    /// Learning-rate schedule over epochs
    #[arg(long, value_enum, default_value_t = ScheduleKind::Constant)]
    schedule: ScheduleKind,
    /// Warm-up epochs (warmup-cosine)
    #[arg(long, default_value_t = 0)]
    warmup: u64,
    /// Epoch at which the cosine reaches 10% of the peak (warmup-cosine)
    #[arg(long)]
    total: Option<u64>,
    /// Global epoch for the schedule [default: the optimizer's step count]
    #[arg(long)]
    epoch: Option<u64>,
    /// Weight decay (applied to ≥2-D parameters only) [default: 0.1; 0 with nesterov]
    #[arg(long)]
    weight_decay: Option<f64>,
    /// First-moment decay
    #[arg(long, default_value_t = 0.9)]
    beta1: f64,
    /// Second-moment decay
    #[arg(long, default_value_t = 0.95)]
    beta2: f64,
    /// Denominator epsilon
    #[arg(long, default_value_t = 1e-8)]
    eps: f64,
    /// Momentum (nesterov)
    #[arg(long, default_value_t = 0.9)]
    momentum: f64,
    /// Clip the global gradient norm to this value (0: no clipping) [default: 1; 0 with nesterov]
    #[arg(long)]
    clip: Option<f64>,
    /// The new checkpoint folder
    #[arg(short, long)]
    output: PathBuf,
    /// Replace the output folder if it exists
    #[arg(long)]
    force: bool,
    /// Print the result as one JSON line
    #[arg(long)]
    json: bool,
}

pub fn run(args: ApplyArgs) -> Result<()> {
    let schedule = match args.schedule {
        ScheduleKind::Constant => Schedule::Constant,
        ScheduleKind::WarmupCosine => match args.total {
            Some(total) if total > args.warmup => Schedule::WarmupCosine {
                warmup: args.warmup,
                total,
            },
            _ => {
                return Err(bad_input!(
                    "--schedule warmup-cosine needs --total greater than --warmup"
                ))
            }
        },
    };
    // DiLoCo's outer step decays and clips only when asked
    let outer = args.optim == OptimArg::Nesterov;
    let weight_decay = args.weight_decay.unwrap_or(if outer { 0.0 } else { 0.1 });
    let clip = args.clip.unwrap_or(if outer { 0.0 } else { 1.0 });
    if !(0.0..1.0).contains(&args.momentum) {
        return Err(bad_input!(
            "--momentum must be in [0, 1), got {}",
            args.momentum
        ));
    }
    let opts = ApplyOptions {
        optim: args.optim.into(),
        lr: args.lr,
        schedule,
        epoch: args.epoch,
        weight_decay,
        beta1: args.beta1,
        beta2: args.beta2,
        eps: args.eps,
        momentum: args.momentum,
        clip: (clip > 0.0).then_some(clip),
    };
    check_new_output(&args.output, args.force)?;
    let ckpt = Checkpoint::open(&args.model).for_flag("--model", &args.model)?;
    let grad = TensorFile::open(&args.grad).for_flag("--grad", &args.grad)?;
    let p = dtrain::optim::apply(&ckpt, &grad, &opts, &args.output)?;
    if args.json {
        println!("{}", serde_json::to_string(&p)?);
    } else {
        println!(
            "{}  {}  step {} lr {:.3e} grad-norm {:.4}",
            p.model,
            args.output.display(),
            p.step,
            p.lr,
            p.grad_norm
        );
    }
    Ok(())
}
