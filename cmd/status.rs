use std::path::PathBuf;

use crate::exit::Result;
use dtrain::hub::client::HubClient;
use dtrain::status::{Role, Status};

#[derive(clap::Args, Debug)]
#[command(after_long_help = "Examples:
  dtrain status /var/lib/dtrain/miner-0
  dtrain status /var/lib/dtrain/validator --repo my-org/dtrain-model --json
  dtrain status /var/lib/dtrain/validator --prometheus -o /var/lib/node_exporter/dtrain.prom

The work folder is the DTRAIN_WORK of scripts/miner.sh or scripts/validator.sh: a
validator's holds epochs.jsonl, a miner's last_epoch. With -o the file is written to a
temporary sibling and renamed (node_exporter's textfile collector never reads half a file).

Environment: HF_ENDPOINT, HF_TOKEN (with --repo).")]
pub struct StatusArgs {
    /// The loop's work folder (DTRAIN_WORK)
    work: PathBuf,
    /// Also ask the Hub for this model repo's newest epoch tag: how far behind the node is
    #[arg(long, value_name = "ORG/NAME")]
    repo: Option<String>,
    /// The validator's ledger, if not WORK/ledger.jsonl
    #[arg(long)]
    ledger: Option<PathBuf>,
    /// Print one JSON object
    #[arg(long, conflicts_with = "prometheus")]
    json: bool,
    /// Print Prometheus text (node_exporter textfile collector format)
    #[arg(long)]
    prometheus: bool,
    /// Write to FILE (atomically) instead of stdout
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Retries per HTTP request (with --repo)
    #[arg(long, default_value_t = 2)]
    retries: u32,
}

pub fn run(args: StatusArgs) -> Result<()> {
    let mut status = dtrain::status::read(&args.work, args.ledger.as_deref())?;
    if let Some(repo) = &args.repo {
        let client = HubClient::from_env(args.retries);
        let newest = dtrain::hub::publish::latest_epoch(&client, repo)?;
        let newest: u64 = newest.parse().unwrap_or(0);
        status.lag = Some(dtrain::status::lag(&status, repo, newest));
    }
    let text = if args.prometheus {
        dtrain::status::prometheus(&status)
    } else if args.json {
        serde_json::to_string(&status)? + "\n"
    } else {
        table(&status)
    };
    crate::common::write_output(args.output.as_deref(), &text)
}

/// Two columns, one line per fact; absent facts are left out.
fn table(s: &Status) -> String {
    let mut rows: Vec<(&str, String)> = vec![
        ("role", format!("{:?}", s.role).to_lowercase()),
        ("work", s.work.display().to_string()),
    ];
    let epoch = match (s.epoch, s.updated, s.role) {
        (None, ..) => "none finished yet".to_string(),
        (Some(e), true, Role::Miner) => format!("{e} (applied)"),
        (Some(e), true, Role::Validator) => format!("{e} (published epoch {})", e + 1),
        (Some(e), false, _) => format!("{e} (no update: {})", s.why.as_deref().unwrap_or("failed")),
    };
    rows.push(("epoch", epoch));
    if let Some(m) = &s.model {
        rows.push(("model", m.clone()));
    }
    if let Some(l) = s.loss {
        rows.push(("loss", format!("{l:.4}")));
    }
    if let Some(l) = s.eval_loss {
        rows.push(("eval loss", format!("{l:.4}")));
    }
    if let Some(t) = s.tokens {
        rows.push(("tokens", t.to_string()));
    }
    if let Some(r) = &s.reduce {
        rows.push((
            "last reduce",
            format!(
                "{} members, {} dropped, {:.1} MB in {:.2} s",
                r.members.len(),
                r.failures.len(),
                r.bytes as f64 / 1e6,
                r.seconds
            ),
        ));
    }
    if s.role == Role::Validator && s.epoch.is_some() {
        rows.push((
            "verdicts",
            format!("{} passed, {} rejected", s.passed.len(), s.rejected.len()),
        ));
        let weights: Vec<String> = s
            .scores
            .iter()
            .map(|(m, w)| format!("{m} {w:.3}"))
            .collect();
        rows.push(("weights", weights.join("  ")));
    }
    if let Some(l) = &s.ledger {
        rows.push((
            "ledger",
            format!(
                "{} entries, head {} (epoch {})",
                l.entries, &l.hash, l.epoch
            ),
        ));
    }
    if let Some(age) = s.seconds_since {
        rows.push(("last epoch", format!("{:.0} s ago", age)));
    }
    if let Some(l) = &s.lag {
        rows.push((
            "hub",
            format!(
                "{} newest tag {}: {} epoch(s) behind",
                l.repo, l.newest_tag, l.epochs
            ),
        ));
    }
    rows.iter().map(|(k, v)| format!("{k:<12}{v}\n")).collect()
}
