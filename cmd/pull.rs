use std::path::PathBuf;

use crate::exit::Result;
use dtrain::hub::client::HubClient;
use dtrain::hub::publish;

#[derive(clap::Args, Debug)]
#[command(after_long_help = "Examples:
  dtrain pull --repo my-org/dtrain-model --tag 12 -o model-12
  dtrain pull --repo my-org/dtrain-model --latest-epoch -o model --json

Environment: HF_ENDPOINT, HF_TOKEN, HF_HOME.")]
pub struct PullArgs {
    /// ORG/NAME on the Hub, or file://ROOT/ORG/NAME
    #[arg(long)]
    repo: String,
    /// The tag to fetch
    #[arg(
        long,
        required_unless_present = "latest_epoch",
        conflicts_with = "latest_epoch"
    )]
    tag: Option<String>,
    /// Fetch the highest numeric tag (the latest epoch)
    #[arg(long)]
    latest_epoch: bool,
    /// Checkpoint folder to create (replaced atomically)
    #[arg(short, long)]
    output: PathBuf,
    /// Retries per HTTP request (exponential backoff)
    #[arg(long, default_value_t = 3)]
    retries: u32,
    /// Print the result as one JSON line
    #[arg(long)]
    json: bool,
}

pub fn run(args: PullArgs) -> Result<()> {
    let client = HubClient::from_env(args.retries);
    let tag = match args.tag {
        Some(t) => t,
        None => publish::latest_epoch(&client, &args.repo)?,
    };
    let s = publish::pull(&client, &args.repo, &tag, &args.output)?;
    if args.json {
        println!("{}", serde_json::to_string(&s)?);
    } else {
        println!(
            "{}  {}  tag {}  {} files, {:.1} MB  {:.2}s",
            s.commit,
            args.output.display(),
            s.tag,
            s.files,
            s.bytes as f64 / 1e6,
            s.seconds
        );
    }
    Ok(())
}
