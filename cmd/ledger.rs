use std::path::PathBuf;

use anyhow::Result;
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
}

#[derive(clap::Args, Debug)]
struct AppendArgs {
    #[arg(long)]
    ledger: PathBuf,
    /// The validator's key
    #[arg(long)]
    key: PathBuf,
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
}

#[derive(clap::Args, Debug)]
struct ShowArgs {
    #[arg(long)]
    ledger: PathBuf,
    /// Only the last entry
    #[arg(long)]
    last: bool,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
struct VerifyArgs {
    #[arg(long)]
    ledger: PathBuf,
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
                    println!(
                        "{:>4}  epoch {:>4}  step {:>6}  model {}  tokens {:>10}  {}",
                        e.index,
                        e.epoch,
                        e.global_step,
                        &e.model[..16.min(e.model.len())],
                        e.tokens,
                        e.contributors.join(",")
                    );
                }
            }
        }
        LedgerCmd::Verify(a) => {
            must_exist(&a.ledger)?;
            let entries = ledger::read(&a.ledger, Some(&a.pubkey))?;
            if entries.is_empty() {
                println!("ok: the ledger is empty (0 entries)");
                return Ok(());
            }
            println!(
                "ok: {} entries, chained and signed by {}",
                entries.len(),
                entries.first().map(|e| &e.validator[..16]).unwrap_or("-")
            );
        }
    }
    Ok(())
}

/// A ledger to read must exist (`append` alone starts a new one).
fn must_exist(path: &std::path::Path) -> Result<()> {
    if !path.is_file() {
        return Err(dtrain::exit::Coded::new(
            dtrain::exit::Code::BadInput,
            format!("--ledger {}: no such ledger file", path.display()),
        )
        .into());
    }
    Ok(())
}
