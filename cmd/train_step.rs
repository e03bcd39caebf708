use crate::common::{BatchArgs, OptimArg};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
#[cfg_attr(not(dtrain_torch), allow(dead_code))]
#[command(after_long_help = "Example:
  dtrain train-step --model model-12 --tokens shard.bin --seq-len 1024 --micro-batch 8 --device cuda \\
      --precision bf16 --key miner.key --miner miner-0 -o grad.safetensors --receipt receipt.json")]
pub struct TrainStepArgs {
    /// Checkpoint folder (config.json + model.safetensors)
    #[arg(long)]
    model: PathBuf,
    /// Token shard (llm.c format)
    #[arg(long)]
    tokens: PathBuf,
    #[command(flatten)]
    batch: BatchArgs,
    /// Gradient file to write (safetensors)
    #[arg(short, long, required_unless_present = "benchmark")]
    output: Option<PathBuf>,
    /// Receipt to write (JSON)
    #[arg(long, required_unless_present = "benchmark")]
    receipt: Option<PathBuf>,
    /// Sign the receipt with this key (from `dtrain keygen`)
    #[arg(long)]
    key: Option<PathBuf>,
    /// The miner's name (its peer name in reduce rounds), recorded in the receipt
    #[arg(long)]
    miner: Option<String>,
    /// The round this work is for (e.g. epoch-12), recorded in the signed receipt:
    /// a validator checking another round refuses it
    #[arg(long)]
    round: Option<String>,
    /// DiLoCo: take H inner optimizer steps over H equal batches of the
    /// sequences and write the pseudo-gradient θ₀ − θ_H (verify cannot check it yet)
    #[arg(long, value_name = "H")]
    inner_steps: Option<usize>,
    /// Inner optimizer
    #[arg(long, value_enum, default_value_t = OptimArg::Adamw, requires = "inner_steps")]
    inner_optim: OptimArg,
    /// Inner learning rate
    #[arg(long, value_name = "LR", requires = "inner_steps")]
    inner_lr: Option<f64>,
    /// Inner weight decay (≥2-D parameters, as apply)
    #[arg(long, default_value_t = 0.1, requires = "inner_steps")]
    inner_weight_decay: f64,
    /// Inner gradient-norm clip (0: none)
    #[arg(long, default_value_t = 1.0, requires = "inner_steps")]
    inner_clip: f64,
    /// Print the summary as JSON
    #[arg(long)]
    json: bool,
    /// Benchmark mode: time N steady-state passes over the micro-batches (after
    /// 3 warm-up passes) and print tokens/s; writes nothing
    #[arg(long, value_name = "N")]
    benchmark: Option<usize>,
    /// Peak FLOP/s of the device, to report MFU in benchmark mode
    #[arg(long, requires = "benchmark")]
    peak_flops: Option<f64>,
}

#[cfg(dtrain_torch)]
pub use with_torch::run;

/// The command itself: built into `dtrain-torch` only.
#[cfg(dtrain_torch)]
mod with_torch {
    use super::*;
    use crate::common::ForFlag;
    use crate::exit::Result;
    use dtrain::model::Checkpoint;
    use dtrain::tokens::Shard;

    /// DiLoCo's inner loop from the flags (None without --inner-steps).
    fn inner(args: &TrainStepArgs) -> Result<Option<dtrain_torch::train::Inner>> {
        let Some(steps) = args.inner_steps else {
            return Ok(None);
        };
        let Some(lr) = args.inner_lr.filter(|lr| *lr > 0.0 && lr.is_finite()) else {
            return Err(crate::exit::bad_input!(
                "--inner-steps needs --inner-lr greater than 0"
            ));
        };
        if steps == 0 {
            return Err(crate::exit::bad_input!("--inner-steps must be at least 1"));
        }
        let optim = dtrain::optim::ApplyOptions {
            optim: args.inner_optim.into(),
            lr,
            weight_decay: args.inner_weight_decay,
            clip: (args.inner_clip > 0.0).then_some(args.inner_clip),
            ..Default::default()
        };
        Ok(Some(dtrain_torch::train::Inner { steps, optim }))
    }

    pub fn run(args: TrainStepArgs) -> Result<()> {
        let ckpt = Checkpoint::open(&args.model).for_flag("--model", &args.model)?;
        let shard = Shard::open(&args.tokens).for_flag("--tokens", &args.tokens)?;
        let mut opts = args.batch.options()?;
        opts.miner = args.miner.clone();
        opts.round = args.round.clone();
        opts.inner = inner(&args)?;
        let key = args
            .key
            .as_deref()
            .map(dtrain::keys::Key::load)
            .transpose()?;
        if let Some(iters) = args.benchmark {
            let r = dtrain_torch::train::bench(&ckpt, &shard, &opts, 3, iters, args.peak_flops)?;
            if args.json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "tokens/s {:.0}  ms/iter {:.1}  tokens/iter {}  peak-mem {:.0} MiB{}",
                    r.tokens_per_s,
                    r.ms_per_iter,
                    r.tokens_per_iter,
                    r.peak_memory_bytes as f64 / (1 << 20) as f64,
                    r.mfu
                        .map(|m| format!("  mfu {:.1}%", m * 100.0))
                        .unwrap_or_default()
                );
            }
            return Ok(());
        }
        let (out, receipt_path) = (args.output.unwrap(), args.receipt.unwrap());
        let files = dtrain_torch::train::StepFiles {
            grad: &out,
            receipt: &receipt_path,
        };
        let receipt = dtrain_torch::train::train_step_to_files(
            &ckpt,
            &shard,
            &args.tokens,
            &opts,
            &files,
            key.as_ref(),
        )?;
        let tps = receipt.tokens as f64 / receipt.seconds;
        if args.json {
            println!(
                "{}",
                serde_json::json!({"loss": receipt.loss, "tokens_per_s": tps, "seconds": receipt.seconds, "grad": receipt.grad, "grad_norm": receipt.grad_norm})
            );
        } else {
            println!(
                "loss {:.4}  tokens/s {:.0}  seconds {:.2}  grad {}",
                receipt.loss,
                tps,
                receipt.seconds,
                &receipt.grad[..16]
            );
        }
        Ok(())
    }
}
