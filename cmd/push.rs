use std::path::PathBuf;

use crate::exit::Result;
use dtrain::hub::client::HubClient;
use dtrain::hub::publish::{self, PushOptions};

#[derive(clap::Args, Debug)]
#[command(after_long_help = "Example:
  dtrain push model-13 --repo my-org/dtrain-model --tag 13 --message \"Epoch 12. Peers 3.\"

Environment: HF_ENDPOINT, HF_TOKEN.")]
pub struct PushArgs {
    /// Checkpoint folder to publish
    ckpt: PathBuf,
    /// ORG/NAME on the Hub, or file://ROOT/ORG/NAME (a local hub folder)
    #[arg(long)]
    repo: String,
    /// Tag to create (the seed tags with the epoch number)
    #[arg(long)]
    tag: String,
    /// Branch to commit to
    #[arg(long, default_value = "main")]
    revision: String,
    /// Commit message [default: "Epoch TAG"]
    #[arg(long)]
    message: Option<String>,
    /// Retries per request (exponential backoff with jitter)
    #[arg(long, default_value_t = 3)]
    retries: u32,
    /// Create the repository if it does not exist
    #[arg(long)]
    create: bool,
    /// Print the result as one JSON line
    #[arg(long)]
    json: bool,
}

pub fn run(args: PushArgs) -> Result<()> {
    let client = HubClient::from_env(args.retries);
    let message = args
        .message
        .clone()
        .unwrap_or_else(|| format!("Epoch {}", args.tag));
    let opts = PushOptions {
        repo: &args.repo,
        tag: &args.tag,
        revision: &args.revision,
        message: &message,
        create: args.create,
    };
    let s = publish::push(&args.ckpt, &opts, &client).map_err(|e| {
        let missing_repo = matches!(
            &e,
            publish::Error::Hub(dtrain::hub::client::ClientError::NotFound { .. })
        );
        if missing_repo && !args.create {
            let why = format!(
                "{}: no such repository (pass --create to make it)",
                args.repo
            );
            crate::exit::CliError::bad_input(why)
        } else {
            e.into()
        }
    })?;
    if args.json {
        println!("{}", serde_json::to_string(&s)?);
    } else {
        let what = if s.unchanged {
            "already there, nothing uploaded".to_string()
        } else {
            format!("{:.1} MB uploaded", s.bytes_uploaded as f64 / 1e6)
        };
        println!(
            "{}  {}  tag {}  {}  {:.2}s",
            s.commit, s.repo, s.tag, what, s.seconds
        );
    }
    Ok(())
}
