use std::path::PathBuf;

use crate::exit::{bad_input, Result};
use dtrain::keys::{Key, PublicKey};
use dtrain::ledger::{self, NewEntry};

#[derive(clap::Args, Debug)]
pub struct LedgerArgs {
    #[command(subcommand)]
    cmd: LedgerCmd,
}

#[derive(clap::Subcommand, Debug)]
enum LedgerCmd {
    /// Append a signed entry for an epoch
    Append(AppendArgs),
    /// Print the entries (or the last one)
    Show(ShowArgs),
    /// Check the chain and every signature
    Verify(VerifyArgs),
    /// Draw the loss curves and contributors per epoch (PNG, or SVG by extension)
    Plot(PlotArgs),
}

#[derive(clap::Args, Debug)]
#[command(after_long_help = "Example:
  dtrain ledger plot --ledger ledger.jsonl -o loss.png")]
struct PlotArgs {
    /// The ledger file
    #[arg(long)]
    ledger: PathBuf,
    /// The picture: a .png or .svg file
    #[arg(short, long)]
    output: PathBuf,
    /// Width in pixels
    #[arg(long, default_value_t = 800)]
    width: u32,
    /// Height in pixels
    #[arg(long, default_value_t = 500)]
    height: u32,
}

#[derive(clap::Args, Debug)]
struct AppendArgs {
    /// The ledger file (created if absent; rewritten atomically)
    #[arg(long)]
    ledger: PathBuf,
    /// The validator's key
    #[arg(long)]
    key: PathBuf,
    /// The epoch this entry records (must follow the last entry's)
    #[arg(long)]
    epoch: u64,
    /// Global optimizer step after this epoch
    #[arg(long)]
    step: u64,
    /// The new model: a checkpoint folder (its hash is taken) or a blake3 hex
    #[arg(long)]
    model: String,
    /// Tokens trained on so far
    #[arg(long)]
    tokens: u64,
    /// Who contributed (comma-separated)
    #[arg(long, value_delimiter = ',')]
    contributors: Vec<String>,
    /// The epoch's scores/weights file (its blake3 is recorded)
    #[arg(long)]
    scores: PathBuf,
    /// Token-weighted mean training loss of the verified miners
    #[arg(long)]
    loss: Option<f64>,
    /// The validator's loss of the new model on held-out rows
    #[arg(long)]
    eval_loss: Option<f64>,
    /// The model repo's tag that holds the new model
    #[arg(long)]
    tag: Option<String>,
}

#[derive(clap::Args, Debug)]
struct ShowArgs {
    /// The ledger file
    #[arg(long)]
    ledger: PathBuf,
    /// Only the last entry
    #[arg(long)]
    last: bool,
    /// Each entry as its JSON line, with its hash
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
#[command(after_long_help = "Examples:
  dtrain ledger verify --ledger ledger.jsonl --pubkey HEX
  dtrain ledger verify --hub my-org/dtrain-model --pubkey HEX     # the run as published

With --hub, the ledger is the one beside the model repo's newest epoch tag, and every
entry's model must be the checkpoint of its tag; the newest tag must hold the last
entry's model (a truncated or rewritten history does not).")]
struct VerifyArgs {
    /// The ledger file
    #[arg(long, required_unless_present = "hub", conflicts_with = "hub")]
    ledger: Option<PathBuf>,
    /// A model repo on the Hub (HF_ENDPOINT): verify the ledger published with its tags
    #[arg(long)]
    hub: Option<String>,
    /// The validator's public key (hex): every entry must be signed by it (a
    /// ledger proves nothing about a key it carries itself)
    #[arg(long)]
    pubkey: PublicKey,
}

pub fn run(args: LedgerArgs) -> Result<()> {
    match args.cmd {
        LedgerCmd::Append(a) => {
            let key = Key::load(&a.key)?;
            let model = if std::path::Path::new(&a.model).is_dir() {
                dtrain::model::Checkpoint::open(&a.model)?.hash
            } else {
                a.model.clone()
            };
            let scores = dtrain::fsio::hash_file(&a.scores)?.to_hex().to_string();
            let e = ledger::append(
                &a.ledger,
                &key,
                NewEntry {
                    epoch: a.epoch,
                    global_step: a.step,
                    model,
                    tokens: a.tokens,
                    contributors: a.contributors,
                    scores,
                    loss: a.loss,
                    eval_loss: a.eval_loss,
                    tag: a.tag,
                },
            )?;
            println!("{}  entry {}  epoch {}", e.hash(), e.index, e.epoch);
        }
        LedgerCmd::Show(a) => {
            must_exist(&a.ledger)?;
            let entries = ledger::read(&a.ledger, None)?;
            let shown: Vec<_> = if a.last {
                entries.last().into_iter().collect()
            } else {
                entries.iter().collect()
            };
            if a.last && shown.is_empty() {
                return Err(ledger::Error::Empty.into());
            }
            for e in shown {
                if a.json {
                    // the entry as recorded, and its hash (what the next entry chains to)
                    let mut v = serde_json::to_value(e).expect("json");
                    v["hash"] = e.hash().into();
                    println!("{v}");
                } else {
                    let losses: String = [("loss", e.loss), ("eval", e.eval_loss)]
                        .iter()
                        .filter_map(|(name, v)| v.map(|v| format!("  {name} {v:.4}")))
                        .collect();
                    println!(
                        "{:>4}  epoch {:>4}  step {:>6}  model {}  tokens {:>10}  {}{losses}",
                        e.index,
                        e.epoch,
                        e.global_step,
                        short(&e.model),
                        e.tokens,
                        e.contributors.join(",")
                    );
                }
            }
        }
        LedgerCmd::Plot(a) => {
            must_exist(&a.ledger)?;
            let entries = ledger::read(&a.ledger, None)?;
            if !(64..=8192).contains(&a.width) || !(64..=8192).contains(&a.height) {
                return Err(bad_input!(
                    "--width and --height must be between 64 and 8192 pixels"
                ));
            }
            dtrain::plot::plot(&entries, &a.output, a.width, a.height)?;
            println!(
                "{}  {} epochs  {}x{}",
                a.output.display(),
                entries.len(),
                a.width,
                a.height
            );
        }
        LedgerCmd::Verify(VerifyArgs {
            hub: Some(repo),
            pubkey,
            ..
        }) => verify_published(&repo, &pubkey)?,
        LedgerCmd::Verify(a) => {
            let path = a.ledger.expect("clap requires --ledger without --hub");
            must_exist(&path)?;
            let entries = ledger::read(&path, Some(&a.pubkey))?;
            if entries.is_empty() {
                println!("ok: the ledger is empty (0 entries)");
                return Ok(());
            }
            println!(
                "ok: {} entries, chained and signed by {}",
                entries.len(),
                entries.first().map(|e| short(&e.validator)).unwrap_or("-")
            );
        }
    }
    Ok(())
}

/// A ledger to read must exist (`append` alone starts a new one).
fn must_exist(path: &std::path::Path) -> Result<()> {
    if !path.is_file() {
        return Err(crate::exit::CliError::new(
            crate::exit::Code::BadInput,
            format!("--ledger {}: no such ledger file", path.display()),
        ));
    }
    Ok(())
}

/// Checks the ledger published beside a model repo's newest epoch tag: its
/// chain and signatures, each entry's model against its tag's checkpoint, and
/// the newest tag against the last entry.
fn verify_published(repo: &str, pubkey: &PublicKey) -> Result<()> {
    use crate::exit::{CliError, Code};
    use dtrain::hub::{client::HubClient, publish};
    let client = HubClient::from_env(3);
    let work = std::env::temp_dir().join(format!("dtrain-ledger-verify-{}", std::process::id()));
    let _cleanup = RemoveOnDrop(work.clone());
    let model_of = |tag: &str| -> Result<(PathBuf, String)> {
        let dir = work.join(format!("tag-{tag}"));
        publish::pull(&client, repo, tag, &dir)?;
        let hash = dtrain::model::Checkpoint::open(&dir)?.hash;
        Ok((dir, hash))
    };
    let newest = publish::latest_epoch(&client, repo)?;
    let (dir, newest_model) = model_of(&newest)?;
    let path = dir.join("ledger.jsonl");
    if !path.is_file() {
        return Err(CliError::new(
            Code::Rejected,
            format!("{repo} tag {newest} carries no ledger.jsonl"),
        ));
    }
    let entries = ledger::read(&path, Some(pubkey))?;
    let last = entries.last().ok_or(ledger::Error::Empty)?;
    if last.model != newest_model {
        return Err(CliError::new(
            Code::Rejected,
            format!(
                "{repo} tag {newest} holds model {}, the ledger's last entry (epoch {}) records {}: a truncated or rewritten history",
                short(&newest_model),
                last.epoch,
                short(&last.model)
            ),
        )
        );
    }
    for e in &entries {
        let Some(tag) = &e.tag else { continue };
        // an epoch tag; anything else would become a path and a URL
        if tag.is_empty() || tag.len() > 20 || !tag.bytes().all(|b| b.is_ascii_digit()) {
            let why = format!(
                "ledger entry {} names tag {tag:?}, not an epoch tag",
                e.index
            );
            return Err(CliError::new(Code::Rejected, why));
        }
        let (_, model) = model_of(tag)?;
        if model != e.model {
            return Err(CliError::new(
                Code::Rejected,
                format!(
                    "ledger entry {} (epoch {}): tag {tag} holds model {}, the entry records {}",
                    e.index,
                    e.epoch,
                    short(&model),
                    short(&e.model)
                ),
            ));
        }
    }
    println!(
        "ok: {} entries from {repo} tag {newest}, chained and signed by {}; every entry's model is its tag's",
        entries.len(),
        short(&pubkey.to_hex())
    );
    Ok(())
}

/// Removes a scratch folder when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The first 16 characters of a hash as the ledger holds it (any string: a
/// ledger read without a pinned key is not trusted to hold hex).
fn short(hash: &str) -> &str {
    hash.char_indices()
        .nth(16)
        .map_or(hash, |(at, _)| &hash[..at])
}
