use std::path::PathBuf;
use std::time::Duration;

use crate::common::{ForFlag, WireArg};
use crate::exit::{bad_input, Result};
use dtrain::keys::Key;
use dtrain::reduce::peers::Peers;
use dtrain::reduce::{self, Config};

#[derive(clap::Args, Debug)]
#[command(after_long_help = "Example (on each peer, with its own --me and key):
  dtrain reduce --peers peers.toml --me miner-0 --key miner.key --round epoch-12 \\
      --in grad.safetensors --out avg.safetensors --transcript transcript.json

Every member that finishes holds byte-identical output; a peer that fails mid-round is left out and the survivors finish.")]
pub struct ReduceArgs {
    /// The round's peers ([[peer]] name, addr, pubkey, bandwidth)
    #[arg(long)]
    peers: PathBuf,
    /// This peer's name in the peers file
    #[arg(long)]
    me: String,
    /// This peer's key (from `dtrain keygen`)
    #[arg(long)]
    key: PathBuf,
    /// Round id (all peers use the same; frames of other rounds are refused)
    #[arg(long)]
    round: String,
    /// This peer's gradient (never modified)
    #[arg(long = "in")]
    input: PathBuf,
    /// The averaged gradient, written only if the round succeeds
    #[arg(long)]
    out: PathBuf,
    /// Signed JSON record of the round
    #[arg(long)]
    transcript: Option<PathBuf>,
    /// Number format on the wire
    #[arg(long, value_enum, default_value_t = WireArg::F32)]
    wire: WireArg,
    /// Seconds by which the round finishes or fails
    #[arg(long, default_value_t = 120.0)]
    deadline: f64,
    /// Averaging weight [default: `sequences` in the input's metadata; 0 receives without contributing]
    #[arg(long)]
    weight: Option<u64>,
    /// Send and accept contributions containing NaN or Inf
    #[arg(long)]
    allow_nonfinite: bool,
    /// Byzantine-robust averaging by owners: centered:TAU (TAU = RMS clip radius per element)
    #[arg(long, value_name = "centered:TAU")]
    clip: Option<String>,
    /// Limit this peer's sending rate (MB/s)
    #[arg(long, value_name = "MB/s")]
    max_rate: Option<f64>,
    /// Elements per chunk
    #[arg(long, default_value_t = reduce::DEFAULT_CHUNK, hide = true)]
    chunk: usize,
    /// Benchmark the transport floor: same bytes, connections and output writes, no MAC, no arithmetic
    #[arg(long, hide = true)]
    floor: bool,
    /// Members needed to finish [default: a majority of the peers file]
    #[arg(long)]
    min_peers: Option<usize>,
    /// Error feedback: keep what the lossy --wire loses in FILE, add it next round
    /// (missing: zeros; written only when the round succeeds; publish the file
    /// as it was before the round: `verify --residual` checks what was sent with it)
    #[arg(long, value_name = "FILE")]
    residual: Option<PathBuf>,
    /// DiLoCo: the round averages pseudo-gradients of H inner steps; an --in
    /// that says otherwise is refused, and peers expecting another H do not connect
    #[arg(long, value_name = "H")]
    inner_steps: Option<usize>,
    /// Print a JSON summary (with where the time went: "breakdown")
    #[arg(long)]
    json: bool,
}

pub fn run(args: ReduceArgs) -> Result<()> {
    let clip = args.clip.as_deref().map(reduce::parse_clip).transpose()?;
    // Duration::from_secs_f64 panics past u64 seconds: a week is more than any round
    if !(args.deadline > 0.0 && args.deadline <= 7.0 * 86_400.0) {
        return Err(bad_input!(
            "--deadline must be between 0 and 604800 seconds (a week)"
        ));
    }
    if let Some(r) = args.max_rate.filter(|r| !(*r >= 1e-3 && r.is_finite())) {
        return Err(bad_input!(
            "--max-rate must be at least 0.001 MB/s, got {r}"
        ));
    }
    let cfg = Config {
        peers: Peers::read(&args.peers).for_flag("--peers", &args.peers)?,
        me: args.me.clone(),
        key: Key::load(&args.key).for_flag("--key", &args.key)?,
        round: args.round.clone(),
        input: args.input.clone(),
        output: args.out.clone(),
        wire: args.wire.into(),
        deadline: Duration::from_secs_f64(args.deadline),
        weight: args.weight,
        allow_nonfinite: args.allow_nonfinite,
        clip,
        max_rate: args.max_rate.map(|r| r * 1e6),
        chunk: args.chunk,
        transport_only: args.floor,
        min_peers: args.min_peers,
        residual: args.residual.clone(),
        inner_steps: args.inner_steps,
    };
    let outcome = reduce::run(cfg)?;
    let b = &outcome.transcript.body;
    if let Some(t) = &args.transcript {
        dtrain::fsio::write_atomic(t, outcome.transcript.to_json().as_bytes())?;
    }
    let moved: u64 = b.traffic.iter().map(|t| t.sent + t.received).sum();
    if args.json {
        println!(
            "{}",
            serde_json::json!({"result": b.result, "members": b.members, "sum_weight": b.sum_weight, "tokens": b.tokens,
                "attempts": b.attempts, "failures": b.failures, "seconds": b.seconds_reduce,
                "seconds_total": b.seconds_total, "bytes_moved": moved, "peak_anon_rss_bytes": b.peak_anon_rss_bytes,
                "breakdown": outcome.timings})
        );
    } else {
        println!(
            "result {}  members {}  weight {}  {:.3}s  {:.1} MB moved{}",
            &b.result[..16],
            b.members.join(","),
            b.sum_weight,
            b.seconds_reduce,
            moved as f64 / 1e6,
            if b.failures.is_empty() {
                String::new()
            } else {
                format!(
                    "  failed: {}",
                    b.failures
                        .iter()
                        .map(|f| f.peer.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                )
            }
        );
    }
    Ok(())
}
