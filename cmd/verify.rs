use std::path::PathBuf;

use anyhow::{Context, Result};
use dtrain::data::{DataSpec, Source};
use dtrain::device::DeviceSpec;
use dtrain::exit::{Code, Coded};
use dtrain::hub::client::HubClient;
use dtrain::keys::PublicKey;
use dtrain::model::Checkpoint;
use dtrain::receipt::Receipt;
use dtrain::reduce::transcript::Transcript;
use dtrain::verify::{self, Inputs};

#[derive(clap::Args, Debug)]
#[command(after_long_help = "Example:
  dtrain verify --receipt receipt.json --grad grad.safetensors --model model-12 --tokens shard.bin \\
      --pubkey HEX --spec spec.json --transcript t.json --sample 4

Exit status 1 when a check fails (the verdict names it).")]
pub struct VerifyArgs {
    /// The miner's receipt
    #[arg(long)]
    receipt: PathBuf,
    /// The miner's gradient file
    #[arg(long)]
    grad: PathBuf,
    /// The checkpoint the gradient should come from
    #[arg(long)]
    model: PathBuf,
    /// The token shard the receipt names
    #[arg(long)]
    tokens: PathBuf,
    /// The miner's public key (hex); without it the receipt's own key is used
    #[arg(long)]
    pubkey: Option<PublicKey>,
    /// Data spec of the miner's assigned rows: re-fetch and re-tokenize them
    #[arg(long)]
    spec: Option<PathBuf>,
    /// Read the spec's rows from local parquet files instead of the Hub
    #[arg(long, requires = "spec")]
    source: Option<PathBuf>,
    /// Recompute K random micro-batches instead of all
    #[arg(long, value_name = "K")]
    sample: Option<usize>,
    /// Owners' reduce transcripts: check what the miner sent them
    #[arg(long)]
    transcript: Vec<PathBuf>,
    /// auto, cpu, cuda or cuda:N
    #[arg(long, default_value = "auto")]
    device: DeviceSpec,
    /// One JSON verdict on stdout instead of a table
    #[arg(long)]
    json: bool,
}

pub fn run(args: VerifyArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.receipt)
        .with_context(|| format!("reading {}", args.receipt.display()))?;
    let receipt = Receipt::from_json(&text).map_err(|e| {
        Coded::new(
            Code::BadInput,
            format!("{}: not a receipt: {e}", args.receipt.display()),
        )
    })?;
    let ckpt = Checkpoint::open(&args.model)?;
    let transcripts = args
        .transcript
        .iter()
        .map(|p| Transcript::read(p).map_err(|e| Coded::new(Code::BadInput, e)))
        .collect::<Result<Vec<_>, _>>()?;
    let spec = args.spec.as_deref().map(DataSpec::read).transpose()?;
    let source = spec.as_ref().map(|s| match &args.source {
        Some(dir) => Source::local(dir, &s.repo),
        None => Source::hub(HubClient::from_env(5), &s.repo, &s.revision),
    });
    let inputs = Inputs {
        receipt: &receipt,
        grad: &args.grad,
        ckpt: &ckpt,
        shard: &args.tokens,
        pubkey: args.pubkey,
        spec: spec.clone().zip(source.as_ref()),
        transcripts: &transcripts,
        sample: args.sample,
        device: dtrain::device::resolve(args.device)?,
    };
    let v = verify::verify(&inputs)?;
    if args.json {
        println!("{}", serde_json::to_string(&v)?);
    } else {
        for c in &v.checks {
            println!(
                "{:<5} {:<15} {}",
                if c.pass { "ok" } else { "FAIL" },
                c.name,
                c.detail
            );
        }
        println!(
            "{}  miner {}  {} sequences verified  {:.2}s",
            if v.pass { "PASS" } else { "FAIL" },
            v.miner.as_deref().unwrap_or("?"),
            v.sequences,
            v.seconds
        );
    }
    if !v.pass {
        let first = v
            .checks
            .iter()
            .find(|c| !c.pass)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .unwrap_or_default();
        return Err(Coded::new(Code::Rejected, format!("verification failed: {first}")).into());
    }
    Ok(())
}
