use std::path::PathBuf;

use crate::exit::Result;
use dtrain::reduce::peers::Peers;

#[derive(clap::Args, Debug)]
#[command(after_long_help = "Examples:
  dtrain peers peers.toml | jq -r '.peers[].name'
  dtrain peers peers.toml --only miner-0,miner-2,validator --toml -o round.toml

The file is checked as reduce checks it (names, keys, max_weight). The scripts read
peers files only through this command.")]
pub struct PeersArgs {
    /// The peers file (TOML: [[peer]] name, addr, pubkey, optional uid and bandwidth)
    file: PathBuf,
    /// Keep only these peers (comma-separated names), in the file's order
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    only: Vec<String>,
    /// Print a peers file (TOML) instead of one JSON object
    #[arg(long)]
    toml: bool,
    /// Write to FILE (atomically) instead of stdout
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

pub fn run(args: PeersArgs) -> Result<()> {
    let mut peers = Peers::read(&args.file)?;
    if !args.only.is_empty() {
        peers = peers.only(&args.only)?;
    }
    let text = if args.toml {
        peers.to_toml()
    } else {
        serde_json::json!({"max_weight": peers.max_weight, "peers": peers.list}).to_string() + "\n"
    };
    crate::common::write_output(args.output.as_deref(), &text)
}
