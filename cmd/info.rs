#[derive(clap::Args, Debug)]
#[cfg_attr(not(dtrain_torch), allow(dead_code))]
#[command(after_long_help = "Example:
  dtrain info --json")]
pub struct InfoArgs {
    /// Print one JSON object instead of lines
    #[arg(long)]
    json: bool,
}

#[cfg(dtrain_torch)]
pub use with_torch::run;

/// The command itself: built into `dtrain-torch` only.
#[cfg(dtrain_torch)]
mod with_torch {
    use super::*;
    use crate::exit::Result;

    pub fn run(args: InfoArgs) -> Result<()> {
        let i = dtrain_torch::info::collect();
        if args.json {
            println!("{}", serde_json::to_string(&i)?);
            return Ok(());
        }
        println!("dtrain: {}", i.dtrain);
        println!("libtorch: {}", i.libtorch);
        println!(
            "libtorch path: {}",
            i.libtorch_path.as_deref().unwrap_or("unknown")
        );
        println!(
            "cuda: {}",
            if i.cuda_available {
                "available"
            } else {
                "not available"
            }
        );
        println!("cuda backend: {}", i.cuda_load);
        println!(
            "cuda devices: {}",
            if i.cuda_devices.is_empty() {
                "none".into()
            } else {
                i.cuda_devices.join(", ")
            }
        );
        if let Some(v) = i.cudnn {
            println!("cudnn: {v}");
        }
        println!(
            "threads: torch {}, rayon {}",
            i.torch_threads, i.rayon_threads
        );
        println!("vector loops: {}", i.simd);
        println!("features: {}", i.features.join(" "));
        Ok(())
    }
}
