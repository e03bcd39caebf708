use std::path::PathBuf;

use crate::exit::Result;
use dtrain::model::Config;

#[derive(clap::Args, Debug)]
#[command(after_long_help = "Example:
  dtrain init --arch gpt2 --seed 0 -o model-0")]
pub struct InitArgs {
    /// tiny, gpt2, gpt2-medium, gpt2-large, gpt2-xl, or a config.json
    #[arg(long, default_value = "tiny")]
    arch: String,
    /// Seed of the initialisation (same seed, same bits)
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Checkpoint folder to create
    #[arg(short, long)]
    output: PathBuf,
}

pub fn run(args: InitArgs) -> Result<()> {
    let config = Config::from_arch(&args.arch)?;
    let hash = dtrain::model::init(&config, args.seed, &args.output)?;
    println!(
        "{hash}  {}  ({} parameters)",
        args.output.display(),
        config.num_params()
    );
    Ok(())
}
