//! Where a miner or a validator stands, read from its work folder: the last
//! epoch it finished, the loss, the last reduce, verdicts and weights, and how
//! far it lags behind the model repo's newest tag.
//!
//! Why from the work folder: the loops (`scripts/miner.sh`, `validator.sh`)
//! already leave one JSON file per step there, so status needs no daemon, no
//! socket and no state of its own; it works on a stopped node as on a running
//! one, and the same reading gives the Prometheus text that the loops write
//! for node_exporter's textfile collector (`--metrics-file`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;

/// Files larger than this are not a loop's output (epochs.jsonl grows by ~1 KB an epoch).
const MAX_FILE: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}: not a miner's or a validator's work folder (no last_epoch, no epochs.jsonl)")]
    NotWork(String),
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error("{0}: {1}")]
    Malformed(String, String),
    #[error(transparent)]
    Ledger(#[from] crate::ledger::Error),
    #[error(transparent)]
    Hub(#[from] crate::hub::publish::Error),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Miner,
    Validator,
}

/// The last reduce this node took part in.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReduceStatus {
    pub seconds: f64,
    pub bytes: u64,
    pub members: Vec<String>,
    pub failures: Vec<String>,
}

/// The validator's ledger head.
#[derive(Clone, Debug, Serialize)]
pub struct LedgerHead {
    pub entries: usize,
    pub epoch: u64,
    pub hash: String,
    pub tokens: u64,
}

/// The model repo's newest epoch tag and how many epochs this node is behind it.
#[derive(Clone, Debug, Serialize)]
pub struct Lag {
    pub repo: String,
    pub newest_tag: u64,
    pub epochs: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub role: Role,
    pub work: PathBuf,
    /// The last epoch it finished (or gave up on); none before the first.
    pub epoch: Option<u64>,
    /// That epoch ended with an update (miner: applied; validator: published a new model).
    pub updated: bool,
    /// Why the validator's last epoch ended without an update.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    pub model: Option<String>,
    /// Miner: its own training loss; validator: the verified miners' mean.
    pub loss: Option<f64>,
    pub eval_loss: Option<f64>,
    /// Miner: the tokens it trained on in the epoch; validator: the ledger's total.
    pub tokens: Option<u64>,
    pub reduce: Option<ReduceStatus>,
    pub passed: Vec<String>,
    pub rejected: Vec<String>,
    pub scores: BTreeMap<String, f64>,
    pub ledger: Option<LedgerHead>,
    /// When the last epoch ended (Unix seconds) and how long ago.
    pub ended_at: Option<f64>,
    pub seconds_since: Option<f64>,
    pub lag: Option<Lag>,
}

/// Reads a work folder; `ledger` is the validator's ledger if not `WORK/ledger.jsonl`.
pub fn read(work: &Path, ledger: Option<&Path>) -> Result<Status, Error> {
    if work.join("epochs.jsonl").exists() || work.join("ledger.jsonl").exists() {
        let ledger = ledger.map_or_else(|| work.join("ledger.jsonl"), Path::to_path_buf);
        validator(work, &ledger)
    } else if work.join("last_epoch").exists() {
        miner(work)
    } else if !work.is_dir() {
        Err(Error::Io(
            work.display().to_string(),
            std::io::Error::from(std::io::ErrorKind::NotFound),
        ))
    } else {
        Err(Error::NotWork(work.display().to_string()))
    }
}

fn empty(role: Role, work: &Path) -> Status {
    Status {
        role,
        work: work.to_path_buf(),
        epoch: None,
        updated: false,
        why: None,
        model: None,
        loss: None,
        eval_loss: None,
        tokens: None,
        reduce: None,
        passed: Vec::new(),
        rejected: Vec::new(),
        scores: BTreeMap::new(),
        ledger: None,
        ended_at: None,
        seconds_since: None,
        lag: None,
    }
}

fn miner(work: &Path) -> Result<Status, Error> {
    let mut s = empty(Role::Miner, work);
    let last = work.join("last_epoch");
    let text = read_text(&last)?;
    let epoch: i64 = text
        .trim()
        .parse()
        .map_err(|_| Error::Malformed(last.display().to_string(), "not an epoch number".into()))?;
    (s.ended_at, s.seconds_since) = when(&last);
    let Ok(epoch) = u64::try_from(epoch) else {
        return Ok(s); // -1: nothing done yet
    };
    s.epoch = Some(epoch);
    if let Some(model) = read_optional(&work.join(format!("applied-{epoch}")))? {
        s.updated = true;
        s.model = Some(model.trim().to_string());
    }
    let dir = work.join(format!("epoch-{epoch}"));
    if let Some(train) = read_json(&dir.join("train.json"))? {
        s.loss = train["loss"].as_f64();
    }
    if let Some(receipt) = read_json(&dir.join("pub/receipt.json"))? {
        s.tokens = receipt["tokens"].as_u64();
    }
    if let Some(r) = read_json(&dir.join("reduce.json"))? {
        s.reduce = Some(ReduceStatus {
            seconds: r["seconds"].as_f64().unwrap_or(0.0),
            bytes: r["bytes_moved"].as_u64().unwrap_or(0),
            members: strings(&r["members"]),
            failures: names(&r["failures"], "peer"),
        });
    }
    Ok(s)
}

fn validator(work: &Path, ledger: &Path) -> Result<Status, Error> {
    let mut s = empty(Role::Validator, work);
    let epochs = work.join("epochs.jsonl");
    if let Some(text) = read_optional(&epochs)? {
        (s.ended_at, s.seconds_since) = when(&epochs);
        if let Some(line) = text.lines().rev().find(|l| !l.trim().is_empty()) {
            let e: Value = serde_json::from_str(line)
                .map_err(|err| Error::Malformed(epochs.display().to_string(), err.to_string()))?;
            fill_from_epoch_line(&mut s, &e);
        }
    }
    if ledger.exists() {
        let entries = crate::ledger::read(ledger, None)?;
        if let Some(last) = entries.last() {
            s.ledger = Some(LedgerHead {
                entries: entries.len(),
                epoch: last.epoch,
                hash: last.hash(),
                tokens: last.tokens,
            });
            s.tokens = Some(last.tokens);
        }
    }
    Ok(s)
}

/// One line of the validator's epochs.jsonl (see `scripts/validator.sh`).
fn fill_from_epoch_line(s: &mut Status, e: &Value) {
    s.epoch = e["epoch"].as_u64();
    s.updated = e["no_update"].as_bool() != Some(true);
    s.why = e["why"].as_str().map(str::to_string);
    s.model = e["model"].as_str().map(str::to_string);
    s.loss = e["loss"].as_f64();
    s.eval_loss = e["eval_loss"].as_f64();
    if s.updated {
        s.reduce = Some(ReduceStatus {
            seconds: e["reduce_seconds"].as_f64().unwrap_or(0.0),
            bytes: (e["reduce_mb"].as_f64().unwrap_or(0.0) * 1e6).round() as u64,
            members: strings(&e["members"]),
            failures: strings(&e["failures"]),
        });
    }
    s.passed = strings(&e["passed"]);
    s.rejected = strings(&e["rejected"]);
    if let Some(scores) = e["scores"].as_object() {
        s.scores = scores
            .iter()
            .filter_map(|(k, v)| v.as_f64().map(|v| (k.clone(), v)))
            .collect();
    }
}

/// How far `s` is behind `newest`: a node that finished epoch E works on E+1.
pub fn lag(s: &Status, repo: &str, newest_tag: u64) -> Lag {
    let next = s.epoch.map_or(0, |e| e + 1);
    Lag {
        repo: repo.to_string(),
        newest_tag,
        epochs: newest_tag.saturating_sub(next),
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect()
}

fn names(v: &Value, key: &str) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x[key].as_str().map(str::to_string))
        .collect()
}

/// When `p` was last written (Unix seconds), and how long ago.
fn when(p: &Path) -> (Option<f64>, Option<f64>) {
    let Ok(modified) = std::fs::metadata(p).and_then(|m| m.modified()) else {
        return (None, None);
    };
    let unix = modified.duration_since(UNIX_EPOCH).unwrap_or_default();
    let ago = SystemTime::now()
        .duration_since(modified)
        .unwrap_or_default();
    (Some(unix.as_secs_f64()), Some(ago.as_secs_f64()))
}

fn read_text(p: &Path) -> Result<String, Error> {
    read_optional(p)?.ok_or_else(|| {
        Error::Io(
            p.display().to_string(),
            std::io::Error::from(std::io::ErrorKind::NotFound),
        )
    })
}

fn read_optional(p: &Path) -> Result<Option<String>, Error> {
    let io = |e| Error::Io(p.display().to_string(), e);
    match std::fs::metadata(p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
        Ok(m) if m.len() > MAX_FILE => {
            return Err(Error::Malformed(
                p.display().to_string(),
                format!("{} bytes is too large for a loop's file", m.len()),
            ))
        }
        Ok(_) => {}
    }
    std::fs::read_to_string(p).map(Some).map_err(io)
}

fn read_json(p: &Path) -> Result<Option<Value>, Error> {
    read_optional(p)?
        .map(|t| serde_json::from_str(&t))
        .transpose()
        .map_err(|e| Error::Malformed(p.display().to_string(), e.to_string()))
}

/// The status as Prometheus text (exposition format 0.0.4), for
/// node_exporter's textfile collector.
pub fn prometheus(s: &Status) -> String {
    let role = match s.role {
        Role::Miner => "miner",
        Role::Validator => "validator",
    };
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, samples: &[(String, f64)]| {
        if samples.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP dtrain_{name} {help}");
        let _ = writeln!(out, "# TYPE dtrain_{name} gauge");
        for (labels, v) in samples {
            let _ = writeln!(out, "dtrain_{name}{{role=\"{role}\"{labels}}} {v}");
        }
    };
    let one = |v: Option<f64>| v.map(|v| vec![(String::new(), v)]).unwrap_or_default();
    gauge(
        "epoch",
        "The last epoch this node finished.",
        &one(s.epoch.map(|e| e as f64)),
    );
    gauge(
        "epoch_updated",
        "1 if that epoch ended with an update (applied or published), else 0.",
        &one(s.epoch.map(|_| f64::from(u8::from(s.updated)))),
    );
    gauge(
        "loss",
        "Training loss of the last epoch (a validator: the verified miners' token-weighted mean).",
        &one(s.loss),
    );
    gauge(
        "eval_loss",
        "The validator's loss of the new model on the held-out rows.",
        &one(s.eval_loss),
    );
    gauge(
        "tokens",
        "Tokens: a miner's in the last epoch; a validator's ledger total.",
        &one(s.tokens.map(|t| t as f64)),
    );
    let reduce = s.reduce.as_ref();
    gauge(
        "reduce_seconds",
        "Wall time of the last reduce.",
        &one(reduce.map(|r| r.seconds)),
    );
    gauge(
        "reduce_bytes",
        "Bytes the last reduce moved.",
        &one(reduce.map(|r| r.bytes as f64)),
    );
    gauge(
        "reduce_members",
        "Members of the last reduce.",
        &one(reduce.map(|r| r.members.len() as f64)),
    );
    gauge(
        "reduce_failures",
        "Peers the last reduce dropped.",
        &one(reduce.map(|r| r.failures.len() as f64)),
    );
    if s.role == Role::Validator && s.epoch.is_some() {
        let verdicts = [("pass", s.passed.len()), ("fail", s.rejected.len())]
            .map(|(v, n)| (format!(",verdict=\"{v}\""), n as f64));
        gauge("verdicts", "The last epoch's verdicts.", &verdicts);
        let scores: Vec<(String, f64)> = s
            .scores
            .iter()
            .map(|(m, v)| (format!(",miner=\"{}\"", label_value(m)), *v))
            .collect();
        gauge(
            "score",
            "Each miner's weight after the last epoch.",
            &scores,
        );
    }
    if let Some(l) = &s.ledger {
        gauge(
            "ledger_entries",
            "Entries in the signed ledger.",
            &one(Some(l.entries as f64)),
        );
    }
    gauge(
        "epoch_end_timestamp_seconds",
        "When the last epoch ended (Unix time).",
        &one(s.ended_at),
    );
    if let Some(l) = &s.lag {
        gauge(
            "newest_tag",
            "The model repo's newest epoch tag.",
            &one(Some(l.newest_tag as f64)),
        );
        gauge(
            "lag_epochs",
            "Epochs this node is behind the model repo.",
            &one(Some(l.epochs as f64)),
        );
    }
    out
}

/// A label value escaped as the exposition format asks (\\, \", \n).
fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_counts_the_epochs_after_the_one_being_worked_on() {
        let mut s = empty(Role::Miner, Path::new("w"));
        assert_eq!(lag(&s, "r", 0).epochs, 0);
        s.epoch = Some(2);
        assert_eq!(lag(&s, "r", 3).epochs, 0);
        assert_eq!(lag(&s, "r", 5).epochs, 2);
        assert_eq!(lag(&s, "r", 1).epochs, 0);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
