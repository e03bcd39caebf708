//! `score`: verdicts, receipts and reduce transcripts in; per-miner weights out.
//!
//! Per epoch, for each miner:
//!
//! * **gradient** — 1 if its verdict passed, else 0 (a failed check zeroes the
//!   miner for the epoch: there is no partial credit for a wrong gradient);
//! * **steps** — the distinct sequences verify confirmed, divided by the most any
//!   miner had;
//! * **bandwidth** — bytes the other peers received from it in the round (as
//!   sender and as span owner), per second of the round, divided by the best
//!   miner's; 0 unless it contributed to every span (a free-rider that receives
//!   but does not send scores 0);
//!
//! raw = w_gs · gradient · steps + w_bw · bandwidth (the seed's 0.5/0.5 by
//! default), then an exponential moving average over epochs
//! (state ← (1 − α)·state + α·raw, α = 0.05 as in the seed), and weights are
//! the averages normalised to sum 1.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::reduce::transcript::Transcript;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{source_name}: {source}")]
    Io {
        source_name: String,
        source: std::io::Error,
    },
    #[error("{source_name} line {line}: not a verdict: {source}")]
    NotAVerdict {
        source_name: String,
        line: usize,
        source: serde_json::Error,
    },
    #[error("{}: not a score state: {source}", path.display())]
    State {
        path: std::path::PathBuf,
        source: serde_json::Error,
    },
}

/// Reads verdicts, one `verify --json` object per line (blank lines
/// skipped), from `reader`; `source_name` names it in errors.
pub fn read_verdicts(
    reader: impl std::io::BufRead,
    source_name: &str,
) -> Result<Vec<VerdictIn>, Error> {
    let mut verdicts = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|source| Error::Io {
            source_name: source_name.to_string(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let v = serde_json::from_str(&line).map_err(|source| Error::NotAVerdict {
            source_name: source_name.to_string(),
            line: i + 1,
            source,
        })?;
        verdicts.push(v);
    }
    Ok(verdicts)
}

impl State {
    /// The state in `path`, or a fresh one when there is no such file.
    pub fn read_or_default(path: &std::path::Path) -> Result<State, Error> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
            Err(source) => {
                let source_name = path.display().to_string();
                return Err(Error::Io {
                    source_name,
                    source,
                });
            }
        };
        serde_json::from_str(&text).map_err(|source| Error::State {
            path: path.to_path_buf(),
            source,
        })
    }
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Config {
    pub w_gradient_steps: f64,
    pub w_bandwidth: f64,
    pub alpha: f64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            w_gradient_steps: 0.5,
            w_bandwidth: 0.5,
            alpha: 0.05,
        }
    }
}

/// What score carries from epoch to epoch.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct State {
    pub epoch: Option<u64>,
    /// Miner → moving average of its raw score.
    pub ema: BTreeMap<String, f64>,
}

/// The parts of a verify verdict score needs.
#[derive(Clone, Debug, Deserialize)]
pub struct VerdictIn {
    pub miner: Option<String>,
    pub pass: bool,
    pub sequences: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Factors {
    pub gradient: f64,
    pub steps_raw: u64,
    pub steps: f64,
    pub bytes_sent: u64,
    pub bandwidth_raw: f64,
    pub contributed_all: bool,
    pub bandwidth: f64,
    pub raw: f64,
    pub ema: f64,
    pub weight: f64,
}

#[derive(Debug, Serialize)]
pub struct Scores {
    pub epoch: Option<u64>,
    pub config: Config,
    pub miners: BTreeMap<String, Factors>,
    pub weights: BTreeMap<String, f64>,
}

/// Computes this epoch's scores and the new state. `miners` are the miners
/// expected this epoch (from receipts); every miner with a verdict counts too.
pub fn score(
    verdicts: &[VerdictIn],
    miners: &[String],
    transcripts: &[Transcript],
    prev: &State,
    epoch: Option<u64>,
    cfg: &Config,
) -> (State, Scores) {
    let mut f: BTreeMap<String, Factors> = BTreeMap::new();
    for m in miners {
        f.entry(m.clone()).or_default();
    }
    for v in verdicts {
        let Some(m) = &v.miner else { continue };
        let e = f.entry(m.clone()).or_default();
        // several verdicts for one miner: all must pass
        let first = e.steps_raw == 0 && e.gradient == 0.0;
        if v.pass && (first || e.gradient > 0.0) {
            e.gradient = 1.0;
            e.steps_raw += v.sequences;
        } else {
            e.gradient = 0.0;
            e.steps_raw = 0;
        }
    }
    // bandwidth: what the others received from each miner, over the round's length
    let round_seconds = transcripts
        .iter()
        .map(|t| t.body.seconds_reduce)
        .fold(0f64, f64::max)
        .max(1e-9);
    let mut received: BTreeMap<String, u64> = BTreeMap::new();
    for t in transcripts {
        for tr in &t.body.traffic {
            *received.entry(tr.peer.clone()).or_default() += tr.received;
        }
    }
    // contributed to every span: each owner lists the miner among its span's contributors
    for (m, e) in f.iter_mut() {
        e.bytes_sent = received.get(m).copied().unwrap_or(0);
        e.bandwidth_raw = e.bytes_sent as f64 / round_seconds;
        let owned: Vec<&crate::reduce::transcript::SpanRecord> = transcripts
            .iter()
            .flat_map(|t| t.body.spans.iter().filter(move |s| s.owner == t.body.me))
            .collect();
        e.contributed_all = !owned.is_empty()
            && owned.iter().all(|s| {
                s.owner == *m || s.contributors.iter().any(|c| &c.peer == m && c.weight > 0)
            });
    }
    let max_steps = f.values().map(|e| e.steps_raw).max().unwrap_or(0).max(1) as f64;
    let max_bw = f
        .values()
        .filter(|e| e.contributed_all && e.gradient > 0.0)
        .map(|e| e.bandwidth_raw)
        .fold(0f64, f64::max);
    let mut state = State {
        epoch,
        ema: prev.ema.clone(),
    };
    for (m, e) in f.iter_mut() {
        e.steps = e.steps_raw as f64 / max_steps;
        // a miner whose gradient failed earns nothing for moving bytes either
        e.bandwidth = if e.contributed_all && e.gradient > 0.0 && max_bw > 0.0 {
            e.bandwidth_raw / max_bw
        } else {
            0.0
        };
        e.raw = cfg.w_gradient_steps * e.gradient * e.steps + cfg.w_bandwidth * e.bandwidth;
        let old = prev.ema.get(m).copied().unwrap_or(0.0);
        e.ema = (1.0 - cfg.alpha) * old + cfg.alpha * e.raw;
        state.ema.insert(m.clone(), e.ema);
    }
    let total: f64 = state.ema.values().sum();
    let weights: BTreeMap<String, f64> = state
        .ema
        .iter()
        .map(|(m, &v)| (m.clone(), if total > 0.0 { v / total } else { 0.0 }))
        .collect();
    for (m, e) in f.iter_mut() {
        e.weight = weights.get(m).copied().unwrap_or(0.0);
    }
    (
        state,
        Scores {
            epoch,
            config: *cfg,
            miners: f,
            weights,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_verdicts_score_zero_and_ema_moves_slowly() {
        let v = vec![
            VerdictIn {
                miner: Some("a".into()),
                pass: true,
                sequences: 10,
            },
            VerdictIn {
                miner: Some("b".into()),
                pass: true,
                sequences: 5,
            },
            VerdictIn {
                miner: Some("c".into()),
                pass: false,
                sequences: 0,
            },
        ];
        let (s1, sc) = score(&v, &[], &[], &State::default(), Some(0), &Config::default());
        assert_eq!(sc.miners["c"].raw, 0.0);
        assert!(
            (sc.miners["a"].raw - 0.5).abs() < 1e-12 && (sc.miners["b"].raw - 0.25).abs() < 1e-12
        );
        assert!((sc.weights["a"] - 2.0 / 3.0).abs() < 1e-12);
        assert!((s1.ema["a"] - 0.025).abs() < 1e-12);
        let (s2, _) = score(&v, &[], &[], &s1, Some(1), &Config::default());
        assert!((s2.ema["a"] - (0.95 * 0.025 + 0.05 * 0.5)).abs() < 1e-12);
    }
}
