use crate::common::BatchArgs;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
#[cfg_attr(not(dtrain_torch), allow(dead_code))]
#[command(after_long_help = "Example:
  dtrain eval --model model-1 --tokens shard.bin --seq-len 64 --device cpu")]
pub struct EvalArgs {
    /// Checkpoint folder
    #[arg(long)]
    model: PathBuf,
    /// Token shard
    #[arg(long)]
    tokens: PathBuf,
    #[command(flatten)]
    batch: BatchArgs,
    /// Also write every position's logits ("logits": [N, T, V], f32 safetensors)
    #[arg(long)]
    logits_out: Option<PathBuf>,
    /// Print the result as one JSON line
    #[arg(long)]
    json: bool,
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

    pub fn run(args: EvalArgs) -> Result<()> {
        let ckpt = Checkpoint::open(&args.model).for_flag("--model", &args.model)?;
        let shard = Shard::open(&args.tokens).for_flag("--tokens", &args.tokens)?;
        let (loss, n) = dtrain_torch::train::eval(
            &ckpt,
            &shard,
            &args.batch.options()?,
            args.logits_out.as_deref(),
        )?;
        if args.json {
            println!(
                "{}",
                serde_json::json!({"loss": loss, "perplexity": loss.exp(), "sequences": n, "model": ckpt.hash})
            );
        } else {
            println!(
                "loss {loss:.6}  perplexity {:.3}  sequences {n}",
                loss.exp()
            );
        }
        Ok(())
    }
}
