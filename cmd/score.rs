use std::io::BufRead;
use std::path::PathBuf;

use crate::exit::Result;
use dtrain::receipt::{ReadError, Receipt};
use dtrain::reduce::transcript::Transcript;
use dtrain::score::{self, Config, State};

use crate::common::ForFlag;

#[derive(clap::Args, Debug)]
#[command(after_long_help = "Example:
  dtrain score --verdicts verdicts.jsonl --receipt a.json --receipt b.json --transcript t.json \\
      --state state.json --state-out state.json --weights-out weights.json --epoch 12 --explain")]
pub struct ScoreArgs {
    /// verify --json verdicts, one JSON object per line ("-": stdin)
    #[arg(long)]
    verdicts: PathBuf,
    /// The epoch's receipts: their miners count as expected (no verdict: 0)
    #[arg(long)]
    receipt: Vec<PathBuf>,
    /// The epoch's reduce transcripts (bandwidth and participation)
    #[arg(long, requires = "peers")]
    transcript: Vec<PathBuf>,
    /// The round's peers file: a transcript counts only when signed by the key it pins for its writer
    #[arg(long)]
    peers: Option<PathBuf>,
    /// Previous state (missing: a fresh start)
    #[arg(long)]
    state: Option<PathBuf>,
    /// New state, written atomically
    #[arg(long)]
    state_out: PathBuf,
    /// Per-miner weights and factors (JSON), written atomically [default: stdout]
    #[arg(long)]
    weights_out: Option<PathBuf>,
    /// The epoch being scored (recorded in the state; a repeated epoch is not counted twice)
    #[arg(long)]
    epoch: Option<u64>,
    /// Weight of gradient·steps in the raw score
    #[arg(long, default_value_t = 0.5)]
    w_gradient_steps: f64,
    /// Weight of bandwidth in the raw score
    #[arg(long, default_value_t = 0.5)]
    w_bandwidth: f64,
    /// EMA coefficient over epochs
    #[arg(long, default_value_t = 0.05)]
    alpha: f64,
    /// Print a table of every factor on stderr
    #[arg(long)]
    explain: bool,
}

pub fn run(args: ScoreArgs) -> Result<()> {
    let reader: Box<dyn BufRead> = if args.verdicts.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(&args.verdicts).for_flag("--verdicts", &args.verdicts)?,
        ))
    };
    let name = args.verdicts.display().to_string();
    let verdicts = score::read_verdicts(reader, &name)?;
    let mut miners = Vec::new();
    for p in &args.receipt {
        // a miner's receipt is its word: one that does not parse names nobody
        // (its miner still counts through its FAIL verdict), it stops no one
        match Receipt::read(p) {
            Ok(r) => miners.extend(r.miner),
            Err(ReadError::Io { source, .. }) => return Err(source).for_flag("--receipt", p),
            Err(e) => eprintln!("dtrain: ignoring {e}"),
        }
    }
    let peers = args
        .peers
        .as_deref()
        .map(dtrain::reduce::peers::Peers::read)
        .transpose()?;
    // miners' transcripts are their word: one that does not parse, or is not
    // signed by its writer's pinned key, is left out (and said so), never believed
    let (transcripts, unreadable) = Transcript::read_all(&args.transcript);
    for e in unreadable {
        eprintln!("dtrain: ignoring {e}");
    }
    let (trusted, ignored) = dtrain::reduce::transcript::trusted(&transcripts, peers.as_ref());
    for note in ignored {
        eprintln!("dtrain: ignoring {note}");
    }
    let transcripts: Vec<Transcript> = trusted.into_iter().cloned().collect();
    let prev = match &args.state {
        Some(p) => State::read_or_default(p)?,
        None => State::default(),
    };
    let cfg = Config {
        w_gradient_steps: args.w_gradient_steps,
        w_bandwidth: args.w_bandwidth,
        alpha: args.alpha,
    };
    let (state, scores) = score::score(&verdicts, &miners, &transcripts, &prev, args.epoch, &cfg);
    dtrain::fsio::write_atomic(
        &args.state_out,
        (serde_json::to_string_pretty(&state)? + "\n").as_bytes(),
    )?;
    let out = serde_json::to_string_pretty(&scores)? + "\n";
    match &args.weights_out {
        Some(p) => {
            dtrain::fsio::write_atomic(p, out.as_bytes())?;
            let weights: Vec<String> = scores
                .weights
                .iter()
                .map(|(m, w)| format!("{m}={w:.3}"))
                .collect();
            println!(
                "{} miner(s)  weights {}  -> {}",
                scores.weights.len(),
                weights.join(" "),
                p.display()
            );
        }
        None => print!("{out}"),
    }
    if args.explain {
        eprintln!(
            "{:<12}{:>9}{:>8}{:>8}{:>12}{:>7}{:>8}{:>8}{:>8}{:>8}",
            "miner", "gradient", "steps", "norm", "bytes/s", "all", "bw", "raw", "ema", "weight"
        );
        for (m, f) in &scores.miners {
            eprintln!(
                "{:<12}{:>9.0}{:>8}{:>8.3}{:>12.0}{:>7}{:>8.3}{:>8.3}{:>8.4}{:>8.3}",
                m,
                f.gradient,
                f.steps_raw,
                f.steps,
                f.bandwidth_raw,
                if f.contributed_all { "yes" } else { "no" },
                f.bandwidth,
                f.raw,
                f.ema,
                f.weight
            );
        }
    }
    Ok(())
}
