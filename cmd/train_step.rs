use crate::common::{BatchArgs, InnerArgs};
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
    #[command(flatten)]
    inner: InnerArgs,
    /// DiLoCo: the folder the loop's states are written to (publish it with
    /// the receipt: verify recomputes segments from them)
    #[arg(long, value_name = "DIR", requires = "inner_steps")]
    states: Option<PathBuf>,
    /// DiLoCo: carry the inner optimizer's state across rounds in FILE (read
    /// when it exists, replaced after the step; without it each round starts fresh)
    #[arg(long, value_name = "FILE", requires = "inner_steps")]
    inner_state: Option<PathBuf>,
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
    /// Benchmark mode: also time the forward, the LM head and the backward
    /// (synchronising the device between them)
    #[arg(long, requires = "benchmark")]
    profile: bool,
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
        let Some(settings) = args.inner.settings()? else {
            return Ok(None);
        };
        let Some(states) = args.states.clone() else {
            return Err(crate::exit::bad_input!(
                "--inner-steps needs --states DIR (the states verify recomputes from)"
            ));
        };
        Ok(Some(dtrain_torch::train::Inner {
            steps: settings.steps,
            optim: settings.optim,
            state_every: settings.state_every,
            states,
            carry: args.inner_state.clone(),
        }))
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
            let settings = dtrain_torch::train::BenchSettings {
                warmup: 3,
                iters,
                peak_flops: args.peak_flops,
                profile: args.profile,
            };
            let r = dtrain_torch::train::bench(&ckpt, &shard, &opts, &settings)?;
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
                if let Some(p) = r.phases_ms {
                    println!(
                        "ms/iter: trunk forward {:.1}  head {:.1}  trunk backward {:.1}",
                        p.trunk_forward, p.head, p.trunk_backward
                    );
                }
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
