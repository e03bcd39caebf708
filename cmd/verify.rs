use std::path::PathBuf;

use dtrain::device::DeviceSpec;
use dtrain::keys::PublicKey;

#[derive(clap::Args, Debug)]
#[cfg_attr(not(dtrain_torch), allow(dead_code))]
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
    /// Recompute K random micro-batches (DiLoCo: K segments) instead of all
    #[arg(long, value_name = "K")]
    sample: Option<usize>,
    /// DiLoCo: the round's inner loop, with train-step's flag names; a
    /// receipt that claims other settings fails
    #[command(flatten)]
    inner: crate::common::InnerArgs,
    /// The error-feedback residual the miner published before the round
    /// (`reduce --residual`): what it sent is its gradient plus this
    #[arg(long, value_name = "FILE", requires = "transcript")]
    residual: Option<PathBuf>,
    /// DiLoCo: the folder of the miner's published states
    #[arg(long, value_name = "DIR", requires = "inner_steps")]
    states: Option<PathBuf>,
    /// DiLoCo: the miner's receipt of the previous round, for a loop that
    /// carries its inner state (train-step --inner-state)
    #[arg(long, value_name = "FILE", requires = "inner_steps")]
    previous_receipt: Option<PathBuf>,
    /// Owners' reduce transcripts: check what the miner sent them
    #[arg(long, requires = "peers")]
    transcript: Vec<PathBuf>,
    /// The round's peers file: a transcript counts only when signed by the key it pins for its writer
    #[arg(long)]
    peers: Option<PathBuf>,
    /// Whose work this must be (the receipt's miner must be this name)
    #[arg(long)]
    miner: Option<String>,
    /// The round the receipt must be for (e.g. epoch-12)
    #[arg(long)]
    round: Option<String>,
    /// This validator's peer name: its own transcript's records are never disputed
    #[arg(long)]
    validator: Option<String>,
    /// The subnet's assignment seed: with --epoch, --uid and --rows the spec must be exactly the miner's rows
    #[arg(long, requires_all = ["spec", "epoch", "uid", "rows"])]
    seed: Option<u64>,
    /// The epoch of the assignment
    #[arg(long, requires = "seed")]
    epoch: Option<u64>,
    /// The miner's uid (the validator's record, not the miner's word)
    #[arg(long, requires = "seed")]
    uid: Option<u64>,
    /// Rows each miner is assigned
    #[arg(long, requires = "seed")]
    rows: Option<u64>,
    /// Rows at the corpus's end held out for evaluation (never assigned)
    #[arg(long, default_value_t = 0)]
    held_out: u64,
    /// The subnet's dataset repository
    #[arg(long, default_value = "HuggingFaceFW/fineweb")]
    data_repo: String,
    /// The subnet's dataset config
    #[arg(long, default_value = "sample-350BT")]
    data_config: String,
    /// The subnet's dataset revision
    #[arg(long, default_value = "main")]
    data_revision: String,
    /// auto, cpu, cuda or cuda:N
    #[arg(long, default_value = "auto")]
    device: DeviceSpec,
    /// One JSON verdict on stdout instead of a table
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
    use crate::exit::{CliError, Code};
    use dtrain::data::{Assignment, DataSpec, Source};
    use dtrain::hub::client::HubClient;
    use dtrain::model::Checkpoint;
    use dtrain::receipt::{ReadError, Receipt};
    use dtrain::reduce::peers::Peers;
    use dtrain::reduce::transcript::Transcript;
    use dtrain::verify::{self, Expected, Inputs};

    /// The subnet's own idea of the miner's data, from the validator's flags.
    fn expected(args: &VerifyArgs) -> Option<Expected> {
        Some(Expected {
            repo: args.data_repo.clone(),
            config: args.data_config.clone(),
            revision: args.data_revision.clone(),
            assignment: Assignment {
                seed: args.seed?,
                epoch: args.epoch?,
                uid: args.uid?,
                rows: args.rows?,
                held_out: args.held_out,
            },
        })
    }

    pub fn run(args: VerifyArgs) -> Result<()> {
        let miner = args.miner.as_deref();
        // what the miner published: a defect in it is a FAIL verdict, not a usage error
        let receipt = match Receipt::read(&args.receipt) {
            Ok(r) => r,
            Err(ReadError::Io { source, .. }) => {
                return Err(
                    CliError::from(source).context(format!("--receipt {}", args.receipt.display()))
                )
            }
            Err(e) => {
                return report(
                    &verify::rejected(miner, "receipt", e.to_string()),
                    args.json,
                )
            }
        };
        let spec = match args.spec.as_deref().map(DataSpec::read).transpose() {
            Ok(s) => s,
            Err(e) => return report(&verify::rejected(miner, "shard", e.to_string()), args.json),
        };
        // the validator's own inputs
        let ckpt = Checkpoint::open(&args.model).for_flag("--model", &args.model)?;
        let peers = args.peers.as_deref().map(Peers::read).transpose()?;
        let (transcripts, unreadable) = Transcript::read_all(&args.transcript);
        let expected = expected(&args);
        // the corpus is the subnet's when the assignment is the validator's, else the spec's
        let (repo, revision) = match (&expected, &spec) {
            (Some(e), _) => (e.repo.clone(), e.revision.clone()),
            (None, Some(s)) => (s.repo.clone(), s.revision.clone()),
            (None, None) => (String::new(), String::new()),
        };
        let source = spec
            .as_ref()
            .map(|_| match &args.source {
                Some(dir) => Ok(Source::local(dir, &repo)),
                None => Source::hub(HubClient::from_env(5), &repo, &revision),
            })
            .transpose()?;
        let previous = match args
            .previous_receipt
            .as_deref()
            .map(Receipt::read)
            .transpose()
        {
            Ok(p) => p,
            Err(e) => {
                let why = format!("--previous-receipt: {e}");
                return report(&verify::rejected(miner, "inner state", why), args.json);
            }
        };
        let inner = match args.inner.settings()? {
            None => None,
            Some(settings) => Some(verify::ExpectedInner {
                steps: settings.steps,
                optim: dtrain::inner::InnerOptim::of(&settings.optim),
                state_every: settings.state_every,
                states: args.states.as_deref().ok_or_else(|| {
                    crate::exit::bad_input!("--inner-steps needs --states DIR (the miner's states)")
                })?,
                previous: previous.as_ref(),
            }),
        };
        let inputs = Inputs {
            receipt: &receipt,
            grad: &args.grad,
            ckpt: &ckpt,
            shard: &args.tokens,
            pubkey: args.pubkey,
            spec: spec.clone().zip(source.as_ref()),
            transcripts: &transcripts,
            peers: peers.as_ref(),
            expected,
            miner,
            round: args.round.as_deref(),
            validator: args.validator.as_deref(),
            sample: args.sample,
            inner,
            residual: args.residual.as_deref(),
        };
        let device = dtrain_torch::device::resolve(args.device)?;
        let mut v = dtrain_torch::verify::verify(&inputs, device)?;
        for why in unreadable {
            v.checks.push(verify::Check {
                name: "transcript ignored".into(),
                pass: true,
                detail: why.to_string(),
            });
        }
        report(&v, args.json)
    }

    /// Prints the verdict; a failed one is exit 1 with its first failed check.
    fn report(v: &verify::Verdict, json: bool) -> Result<()> {
        if json {
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
            return Err(CliError::new(
                Code::Rejected,
                format!("verification failed: {first}"),
            ));
        }
        Ok(())
    }
}
