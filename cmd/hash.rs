use std::path::PathBuf;

use crate::exit::{Context, Result};

#[derive(clap::Args, Debug)]
#[command(after_long_help = "Example:
  dtrain hash model-1 avg.safetensors")]
pub struct HashArgs {
    /// Files, or checkpoint folders (hashed as their model.safetensors: the model's identity)
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

/// blake3 of files, as b3sum prints them.
pub fn run(args: HashArgs) -> Result<()> {
    for p in &args.paths {
        let f = if p.is_dir() {
            p.join(dtrain::model::MODEL_FILE)
        } else {
            p.clone()
        };
        let h = dtrain::fsio::hash_file(&f).with_context(|| f.display().to_string())?;
        println!("{}  {}", h.to_hex(), p.display());
    }
    Ok(())
}
