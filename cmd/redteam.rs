//! `dtrain-redteam`: makes the cheats that verify must catch, for benchmark
//! and calibration scripts (the Rust tests forge them in-process). A cheater
//! controls its gradient file and its key, so each forgery rewrites the
//! gradient's values, points the receipt at the new file and re-signs it.
//!
//!   dtrain-redteam forge --grad g.safetensors --receipt r.json --key miner.key --scale 1.01
//!   dtrain-redteam forge --grad g.safetensors --receipt r.json --key miner.key --random
//!
//! Writes GRAD and RECEIPT in place (atomically). Not part of `dtrain`: it
//! does nothing an honest participant needs.

use std::path::PathBuf;

#[path = "exit.rs"]
#[allow(dead_code, unused_macros, unused_imports)]
mod exit;

use clap::Parser;
use dtrain::keys::Key;
use dtrain::receipt::Receipt;
use dtrain::tensors::TensorFile;
use exit::Result;

#[derive(Parser, Debug)]
#[command(
    name = "dtrain-redteam",
    version,
    about = "Forge the cheats verify must catch"
)]
enum Cli {
    /// Rewrite a gradient's values and re-sign its receipt
    Forge(ForgeArgs),
}

#[derive(clap::Args, Debug)]
struct ForgeArgs {
    #[arg(long)]
    grad: PathBuf,
    #[arg(long)]
    receipt: PathBuf,
    /// The cheater's own key (the receipt's signer)
    #[arg(long)]
    key: PathBuf,
    /// Multiply every value by F
    #[arg(long, value_name = "F", conflicts_with = "random")]
    scale: Option<f32>,
    /// Replace the values with deterministic noise of the gradient's RMS
    #[arg(long)]
    random: bool,
    /// With --scale: scale the receipt's micro-batch sketches and gradient
    /// norm too, so the claims agree with the file and only recomputation
    /// can tell
    #[arg(long, requires = "scale")]
    consistent: bool,
}

fn forge(a: ForgeArgs) -> Result<()> {
    let g = TensorFile::open(&a.grad)?;
    let specs = g.specs();
    let meta = g.metadata().clone();
    let values = g.to_f32()?;
    let rms = (values.iter().map(|&x| (x as f64).powi(2)).sum::<f64>()
        / values.len().max(1) as f64)
        .sqrt();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let forged: Vec<f32> = values
        .iter()
        .map(|&x| match a.scale {
            Some(f) => x * f,
            None => {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ((state >> 40) as f64 / (1u64 << 24) as f64 * 2.0 - 1.0) as f32 * (rms * 1.7) as f32
            }
        })
        .collect();
    drop(g);
    dtrain::tensors::write_flat_f32(&a.grad, &specs, &forged, &meta)?;
    let mut r = Receipt::read(&a.receipt)?;
    if let (true, Some(f)) = (a.consistent, a.scale) {
        for mb in &mut r.micro_batches {
            mb.sketch.iter_mut().for_each(|v| *v *= f as f64);
        }
        r.grad_norm *= f as f64;
    }
    r.grad = dtrain::fsio::hash_file(&a.grad)?.to_hex().to_string();
    r.sign(&Key::load(&a.key)?);
    dtrain::fsio::write_atomic(&a.receipt, r.to_json().as_bytes())?;
    Ok(())
}

fn main() {
    let result = match Cli::parse() {
        Cli::Forge(a) => forge(a),
    };
    if let Err(err) = result {
        eprintln!("dtrain-redteam: {}", err.message());
        std::process::exit(err.code as i32);
    }
}
