//! The `dtrain` command line: argument parsing and printing only; the work is in
//! the libraries. Each subcommand lives in its own file with its `Args` struct
//! and a `run` function.
//!
//! These sources build two binaries: `dtrain` (no libtorch) and `dtrain-torch`
//! (cmd/torch, with `cfg(dtrain_torch)`). Both parse the same command line, so
//! help, man pages and completions describe one `dtrain`; `dtrain` runs every
//! command that needs no model itself and hands info, train-step, eval and
//! verify to `dtrain-torch`.

use clap::{Parser, Subcommand};

mod apply;
mod common;
mod eval;
mod exit;
mod fetch_shard;
mod gen_docs;
mod hash;
mod hub;
mod info;
mod init;
mod keygen;
mod ledger;
mod peers;
mod plot;
mod pull;
mod push;
mod reduce;
mod relay;
mod roster;
mod score;
mod status;
mod tokenize;
mod train_step;
mod verify;

const AFTER_HELP: &str = "\
A miner's epoch:
  dtrain pull --repo ORG/model --tag E -o model
  dtrain fetch-shard --epoch E --uid U --spec-out spec.json | dtrain tokenize --format jsonl -o shard.bin
  dtrain train-step --model model --tokens shard.bin --key miner.key -o grad.safetensors --receipt receipt.json
  dtrain reduce --peers peers.toml --me NAME --key miner.key --round epoch-E --in grad.safetensors --out avg.safetensors
  dtrain apply --model model --grad avg.safetensors --lr 3e-3 -o next
scripts/miner.sh and scripts/validator.sh run the whole loops; scripts/swarm.sh runs a local subnet.

Exit status:
  0 ok; 1 verification failed or result rejected; 2 usage or bad input; 3 I/O or network failure after
  retries; 4 peer or round failure; 5 numeric failure (NaN/Inf). Errors are one line on stderr.

Environment:
  HF_ENDPOINT  the Hub (default https://huggingface.co; a `dtrain hub serve` URL for a local hub)
  HF_TOKEN     Hub token for push and private repos
  HF_HOME      cache folder (parquet footers, downloads)
  DTRAIN_LOG   log filter in env-filter syntax, e.g. dtrain::reduce=debug,warn (overrides -v/-q)
  NO_COLOR     set: no colour in log lines
  DTRAIN_NO_SIMD  set: the baseline loops instead of AVX2/AVX-512 ones (the same results, slower)

Every output file is written to a temporary sibling and renamed into place: a failed command leaves
no partial output and its inputs untouched.";

/// Decentralized GPT-2 training as small Unix commands.
#[derive(Parser, Debug)]
#[command(
    name = "dtrain",
    version,
    about,
    long_about = None,
    propagate_version = true,
    after_long_help = AFTER_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// More log lines on stderr: -v info, -vv debug, -vvv everything
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Errors only on stderr: no warnings, no summary line, no progress bar
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// blake3 of files, or of checkpoints (their model identity)
    Hash(hash::HashArgs),
    /// Show libtorch, CUDA, threads and build features
    Info(info::InfoArgs),
    /// Stream a miner's assigned rows of fineweb from the Hub (JSON lines)
    FetchShard(fetch_shard::FetchShardArgs),
    /// Turn text into a GPT-2 token shard (llm.c format)
    Tokenize(tokenize::TokenizeArgs),
    /// Create a freshly initialised GPT-2 checkpoint
    Init(init::InitArgs),
    /// Compute a GPT-2 gradient on a token shard; write it and a receipt
    TrainStep(train_step::TrainStepArgs),
    /// Step the optimizer (AdamW or LAMB) with an averaged gradient
    Apply(apply::ApplyArgs),
    /// Create an ed25519 key for reduce, receipts and the ledger
    Keygen(keygen::KeygenArgs),
    /// Read a peers file (checked as reduce reads it): JSON, or a file of some of them
    Peers(peers::PeersArgs),
    /// Butterfly all-reduce of gradient files with the round's peers
    Reduce(reduce::ReduceArgs),
    /// Per-epoch membership: signed announcements, the validator's signed roster, its peers file
    Roster(roster::RosterArgs),
    /// Forward reduce connections to peers that accept none (behind NAT)
    Relay(relay::RelayArgs),
    /// Check a miner's gradient against its receipt: signature, data, recomputation
    Verify(Box<verify::VerifyArgs>),
    /// Turn verdicts, receipts and reduce transcripts into miner weights
    Score(score::ScoreArgs),
    /// The signed, hash-chained progress ledger
    Ledger(ledger::LedgerArgs),
    /// Draw named series of points from JSON lines (PNG, or SVG by extension)
    Plot(plot::PlotArgs),
    /// Mean loss of a checkpoint on a token shard
    Eval(eval::EvalArgs),
    /// Where a miner or validator stands: epoch, loss, last reduce, verdicts, lag
    Status(status::StatusArgs),
    /// Publish a checkpoint to the Hub, tagged (e.g. with the epoch)
    Push(push::PushArgs),
    /// Fetch a tagged checkpoint from the Hub
    Pull(pull::PullArgs),
    /// The local hub: serve a folder over the Hugging Face Hub API
    Hub(hub::HubArgs),
    /// Write man pages and shell completions (for packagers)
    #[command(hide = true)]
    GenDocs(gen_docs::GenDocsArgs),
}

fn main() {
    dtrain::panics::install_hook();
    let cli = Cli::parse();
    let verbosity = dtrain::log::Verbosity {
        verbose: cli.verbose,
        quiet: cli.quiet,
        default: match cli.command {
            Command::Hub(_) | Command::Relay(_) => tracing::Level::INFO,
            _ => tracing::Level::WARN,
        },
    };
    if let Err(err) = dtrain::log::init(verbosity) {
        eprintln!("dtrain: {err}");
        std::process::exit(crate::exit::Code::BadInput as i32);
    }
    // Filters behave like Unix filters: a closed stdout pipe ends the process
    // quietly. Network commands must instead see a dead peer's socket as an
    // error (EPIPE), not die of SIGPIPE.
    let network = matches!(
        cli.command,
        Command::Reduce(_) | Command::Hub(_) | Command::Relay(_)
    );
    // SAFETY: setting a signal disposition at start-up, before any threads.
    unsafe {
        libc::signal(
            libc::SIGPIPE,
            if network {
                libc::SIG_IGN
            } else {
                libc::SIG_DFL
            },
        );
    }
    let result = match cli.command {
        #[cfg(dtrain_torch)]
        Command::Info(a) => info::run(a),
        #[cfg(dtrain_torch)]
        Command::TrainStep(a) => train_step::run(a),
        #[cfg(dtrain_torch)]
        Command::Eval(a) => eval::run(a),
        #[cfg(dtrain_torch)]
        Command::Verify(a) => verify::run(*a),
        #[cfg(not(dtrain_torch))]
        Command::Info(_) | Command::TrainStep(_) | Command::Eval(_) | Command::Verify(_) => {
            hand_to_torch()
        }
        Command::Hash(a) => hash::run(a),
        Command::FetchShard(a) => fetch_shard::run(a),
        Command::Tokenize(a) => tokenize::run(a),
        Command::Init(a) => init::run(a),
        Command::Apply(a) => apply::run(a),
        Command::Score(a) => score::run(a),
        Command::Ledger(a) => ledger::run(a),
        Command::Plot(a) => plot::run(a),
        Command::Keygen(a) => keygen::run(a),
        Command::Reduce(a) => reduce::run(a),
        Command::Peers(a) => peers::run(a),
        Command::Roster(a) => roster::run(a),
        Command::Relay(a) => relay::run(a),
        Command::Hub(a) => hub::run(a),
        Command::Push(a) => push::run(a),
        Command::Pull(a) => pull::run(a),
        Command::Status(a) => status::run(a),
        Command::GenDocs(a) => gen_docs::run(a),
    };
    if let Err(err) = result {
        eprintln!("dtrain: {}", err.message());
        std::process::exit(err.code as i32);
    }
}

/// The commands that touch a model run in `dtrain-torch`, beside this binary
/// (libtorch costs ~0.3 s and ~120 MB before `main`; the other commands do not
/// pay it): exec'd with the same arguments, so its output and exit code are
/// the command's. The arguments were checked here already.
#[cfg(not(dtrain_torch))]
fn hand_to_torch() -> exit::Result<()> {
    use std::os::unix::process::CommandExt;
    let me = std::env::current_exe()?;
    let torch = me.with_file_name("dtrain-torch");
    let err = std::process::Command::new(&torch)
        .args(std::env::args_os().skip(1))
        .exec();
    Err(exit::CliError::new(
        exit::Code::Io,
        format!(
            "this command runs in dtrain-torch, which is not beside {} ({err}); scripts/setup.sh builds both",
            me.display()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
