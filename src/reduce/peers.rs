//! PEERS.toml: who takes part in a round.
//!
//! ```toml
//! [[peer]]
//! name = "miner-a"
//! addr = "10.0.0.1:7000"    # where this peer listens
//! pubkey = "…64 hex…"       # as `dtrain keygen` prints it
//! bandwidth = 1000.0        # optional hint (any unit); spans are proportional
//! uid = 3                   # optional: a miner's uid (its assigned rows)
//! # relay = "10.0.0.9:7100" # instead of addr: reached through this relay
//! ```
//! A peer's rank is its position in the file; every peer must use the same file.
//!
//! A top-level `max_weight = N` (before the first `[[peer]]`) caps the
//! averaging weight (sequences) any one peer may announce; a peer announcing
//! more is dropped from the round. Without it the cap is
//! [`DEFAULT_MAX_WEIGHT`]: with at most 65 535 peers the sum of weights then
//! fits easily in 64 bits.

use std::path::Path;

use serde::Deserialize;

use crate::keys::PublicKey;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {why}")]
    Parse { path: String, why: String },
    #[error("{path}: {why}")]
    Invalid { path: String, why: String },
}

#[derive(Clone, Debug, Deserialize, serde::Serialize)]
pub struct Peer {
    pub name: String,
    /// Where it accepts connections (unused for a peer behind a relay).
    #[serde(default)]
    pub addr: String,
    pub pubkey: PublicKey,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<f64>,
    /// A miner's uid (which rows the subnet assigns it): the validator's
    /// record, which verify holds a miner's data spec to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u64>,
    /// The relay this peer is reached through (it accepts no connections
    /// itself; its `addr` is unused, and may be empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<String>,
}

/// Why `name` cannot name a peer (letters, digits, `-_.`; at most 64).
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid name '{}' (letters, digits, - _ . ; at most 64)",
            name.chars().take(64).collect::<String>()
        ))
    }
}

/// Why `addr` is not HOST:PORT (a host name or IP, at most 255 characters).
pub fn check_addr(addr: &str) -> Result<(), String> {
    let bad = || {
        Err(format!(
            "address '{}' is not HOST:PORT",
            addr.chars().take(80).collect::<String>()
        ))
    };
    let Some((host, port)) = addr.rsplit_once(':') else {
        return bad();
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.:".contains(c));
    if addr.len() > 255 || !host_ok || port.parse::<u16>().is_err() {
        return bad();
    }
    Ok(())
}

#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct File {
    max_weight: Option<u64>,
    peer: Vec<Peer>,
}

/// A TOML error as one line ("line L, column C: what"), not toml's
/// multi-line snippet: errors are one line on stderr.
fn one_line(e: &toml::de::Error, text: &str) -> String {
    let what = e.message().trim();
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {what}")
        }
        None => what.to_string(),
    }
}

/// The weight cap when the peers file sets none: 2^24 sequences, far above
/// one step's batch on any machine.
pub const DEFAULT_MAX_WEIGHT: u64 = 1 << 24;

/// The peers in rank order, and the rules every peer applies to all.
#[derive(Clone, Debug)]
pub struct Peers {
    pub list: Vec<Peer>,
    /// Most averaging weight one peer may announce.
    pub max_weight: u64,
}

impl Peers {
    pub fn read(path: &Path) -> Result<Self, Error> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| Error::Parse {
            path: p.clone(),
            why: e.to_string(),
        })?;
        Self::parse(&text, &p)
    }

    pub fn parse(text: &str, origin: &str) -> Result<Self, Error> {
        let f: File = toml::from_str(text).map_err(|e| Error::Parse {
            path: origin.into(),
            why: one_line(&e, text),
        })?;
        let bad = |why: String| Error::Invalid {
            path: origin.into(),
            why,
        };
        if f.peer.is_empty() {
            return Err(bad("no [[peer]] entries".into()));
        }
        if f.peer.len() > u16::MAX as usize {
            return Err(bad("too many peers".into()));
        }
        for (i, p) in f.peer.iter().enumerate() {
            if let Err(why) = check_name(&p.name) {
                return Err(bad(format!("peer {}: {why}", i + 1)));
            }
            let reachable = match &p.relay {
                Some(relay) => check_addr(relay).map_err(|why| format!("relay: {why}")),
                None => check_addr(&p.addr),
            };
            if let Err(why) = reachable {
                return Err(bad(format!("peer '{}': {why}", p.name)));
            }
            if f.peer[..i].iter().any(|q| q.name == p.name) {
                return Err(bad(format!("peer name '{}' appears twice", p.name)));
            }
            if f.peer[..i].iter().any(|q| q.pubkey == p.pubkey) {
                return Err(bad(format!(
                    "peer '{}' reuses another peer's public key",
                    p.name
                )));
            }
            if p.bandwidth.is_some_and(|b| !(b > 0.0 && b.is_finite())) {
                return Err(bad(format!(
                    "peer '{}': bandwidth must be a positive number",
                    p.name
                )));
            }
        }
        let max_weight = f.max_weight.unwrap_or(DEFAULT_MAX_WEIGHT);
        if max_weight == 0 || max_weight > DEFAULT_MAX_WEIGHT << 16 {
            return Err(bad(format!(
                "max_weight must be between 1 and {}",
                DEFAULT_MAX_WEIGHT << 16
            )));
        }
        Ok(Peers {
            list: f.peer,
            max_weight,
        })
    }

    /// The peers named in `names`, in this file's order, under the same rules.
    pub fn only(&self, names: &[String]) -> Result<Peers, Error> {
        if let Some(unknown) = names.iter().find(|n| self.rank(n).is_none()) {
            return Err(Error::Invalid {
                path: "--only".into(),
                why: format!("no peer named '{unknown}' in the peers file"),
            });
        }
        Ok(Peers {
            list: self
                .list
                .iter()
                .filter(|p| names.contains(&p.name))
                .cloned()
                .collect(),
            max_weight: self.max_weight,
        })
    }

    /// The peers file these peers and rules make (`parse` reads it back).
    pub fn to_toml(&self) -> String {
        toml::to_string(&File {
            max_weight: Some(self.max_weight),
            peer: self.list.clone(),
        })
        .expect("peers serialize")
    }

    pub fn rank(&self, name: &str) -> Option<usize> {
        self.list.iter().position(|p| p.name == name)
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// Spans of the flat vector: member `ranks[i]` owns `spans[i]`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Plan {
    pub owners: Vec<usize>,
    /// (start, len) in elements
    pub spans: Vec<(usize, usize)>,
}

/// Span starts are multiples of this many elements (and of the q8 block).
pub const ALIGN: usize = 64;

impl Plan {
    /// Cuts `len` elements into one span per member, proportional to the
    /// bandwidth hints (equal without hints), aligned to [`ALIGN`].
    pub fn new(members: &[usize], peers: &Peers, len: usize) -> Self {
        let w: Vec<f64> = members
            .iter()
            .map(|&r| peers.list[r].bandwidth.unwrap_or(1.0))
            .collect();
        let total: f64 = w.iter().sum();
        let mut spans = Vec::with_capacity(members.len());
        let mut start = 0usize;
        let mut acc = 0.0;
        for (i, wi) in w.iter().enumerate() {
            acc += wi;
            let end = if i + 1 == members.len() {
                len
            } else {
                (((acc / total) * len as f64) as usize / ALIGN * ALIGN).clamp(start, len)
            };
            spans.push((start, end - start));
            start = end;
        }
        Plan {
            owners: members.to_vec(),
            spans,
        }
    }

    pub fn span_of(&self, owner: usize) -> Option<(usize, usize)> {
        self.owners
            .iter()
            .position(|&o| o == owner)
            .map(|i| self.spans[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Key;

    fn peers(bw: &[Option<f64>]) -> Peers {
        let mut t = String::new();
        for (i, b) in bw.iter().enumerate() {
            t += &format!(
                "[[peer]]\nname = \"p{i}\"\naddr = \"127.0.0.1:{}\"\npubkey = \"{}\"\n",
                7000 + i,
                Key::generate().public().to_hex()
            );
            if let Some(b) = b {
                t += &format!("bandwidth = {b}\n");
            }
        }
        Peers::parse(&t, "test").unwrap()
    }

    #[test]
    fn a_restricted_file_keeps_order_rules_and_reads_back() {
        let all = peers(&[None, Some(2.0), None]);
        let names = vec!["p2".to_string(), "p0".to_string()];
        let two = Peers::parse(&all.only(&names).unwrap().to_toml(), "t").unwrap();
        let got: Vec<&str> = two.list.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(got, ["p0", "p2"]);
        assert_eq!(two.max_weight, all.max_weight);
        assert_eq!(two.list[1].pubkey, all.list[2].pubkey);
        assert!(all.only(&["p9".to_string()]).is_err());
    }

    #[test]
    fn plans_cover_the_vector_aligned_and_proportional() {
        let p = peers(&[None, None, None]);
        let plan = Plan::new(&[0, 1, 2], &p, 1000);
        assert_eq!(plan.spans.iter().map(|s| s.1).sum::<usize>(), 1000);
        assert!(plan.spans.iter().all(|s| s.0 % ALIGN == 0));
        let p = peers(&[Some(3.0), Some(1.0)]);
        let plan = Plan::new(&[0, 1], &p, 64_000);
        assert_eq!(plan.spans, vec![(0, 48_000), (48_000, 16_000)]);
        let plan = Plan::new(&[1], &p, 10);
        assert_eq!(plan.spans, vec![(0, 10)]);
    }

    #[test]
    fn rejects_bad_files() {
        let k = Key::generate().public().to_hex();
        let dup = format!("[[peer]]\nname=\"a\"\naddr=\"x:1\"\npubkey=\"{k}\"\n[[peer]]\nname=\"a\"\naddr=\"x:2\"\npubkey=\"{k}\"\n");
        assert!(Peers::parse(&dup, "t")
            .unwrap_err()
            .to_string()
            .contains("appears twice"));
        assert!(
            Peers::parse("[[peer]]\nname=\"a\"\naddr=\"x:1\"\npubkey=\"00\"\n", "t")
                .unwrap_err()
                .to_string()
                .contains("invalid public key")
        );
    }
}
