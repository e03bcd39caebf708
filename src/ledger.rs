//! The progress ledger: an append-only, hash-chained, signed record of the
//! training run (the roadmap's replacement for WandB as the tracker).
//!
//! One JSON entry per line: {index, epoch, global step, model hash, tokens so
//! far, contributors, blake3 of the epoch's scores, previous entry's hash, the
//! validator's public key, its ed25519 signature over the entry's canonical
//! bytes}. An entry's hash is blake3 of its full line. Changing, dropping or
//! reordering an entry breaks the chain at that entry, and `verify` names it.
//! Miners read the current epoch and model from the last entry.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::keys::{Key, PublicKey};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("ledger entry {index}: {why}")]
    Broken { index: usize, why: String },
    #[error("the ledger is empty")]
    Empty,
    /// An entry for an epoch the ledger already has (or an older one): a
    /// validator restarted after appending must not record the epoch twice.
    #[error("the ledger already records epoch {last} (entry {index}); an entry for epoch {new} would fork it")]
    Fork { index: u64, last: u64, new: u64 },
    #[error("the {0} to record is not a finite number")]
    NotFinite(&'static str),
    #[error("{0}: {1} bytes, more than a ledger holds")]
    TooLarge(String, u64),
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub index: u64,
    pub epoch: u64,
    pub global_step: u64,
    pub model: String,
    pub tokens: u64,
    pub contributors: Vec<String>,
    pub scores: String,
    pub prev: String,
    pub validator: String,
    /// Token-weighted mean training loss of the epoch's verified miners
    /// (absent in older ledgers, which verify as they were signed)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    /// The validator's own loss of the new model on held-out rows
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_loss: Option<f64>,
    /// The model repo's tag that holds the new model
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(default)]
    pub signature: String,
}

impl Entry {
    fn signing_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&Entry {
            signature: String::new(),
            ..self.clone()
        })
        .expect("json")
    }

    pub fn line(&self) -> String {
        serde_json::to_string(self).expect("json")
    }

    pub fn hash(&self) -> String {
        blake3::hash(self.line().as_bytes()).to_hex().to_string()
    }
}

/// What a new entry records.
pub struct NewEntry {
    pub epoch: u64,
    pub global_step: u64,
    pub model: String,
    pub tokens: u64,
    pub contributors: Vec<String>,
    pub scores: String,
    pub loss: Option<f64>,
    pub eval_loss: Option<f64>,
    pub tag: Option<String>,
}

/// Largest ledger file read.
pub const MAX_LEDGER_BYTES: u64 = 64 << 20;

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Reads and checks a whole ledger (missing file: empty ledger).
pub fn read(path: &Path, pubkey: Option<&PublicKey>) -> Result<Vec<Entry>, Error> {
    // a ledger may come from a hub: bounded before it is read (an entry is
    // ~600 bytes, so this is over 100 000 epochs)
    if let Ok(md) = std::fs::metadata(path) {
        if md.len() > MAX_LEDGER_BYTES {
            return Err(Error::TooLarge(path.display().to_string(), md.len()));
        }
    }
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::Io(path.display().to_string(), e)),
    };
    let mut out: Vec<Entry> = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let bad = |why: String| Error::Broken { index: i, why };
        let e: Entry =
            serde_json::from_str(line).map_err(|e| bad(format!("not a ledger entry: {e}")))?;
        if e.line() != line.trim_end() {
            return Err(bad("not in canonical form (edited by hand?)".into()));
        }
        if e.index != i as u64 {
            return Err(bad(format!(
                "has index {} at position {i} (reordered or dropped entries)",
                e.index
            )));
        }
        let want_prev = out
            .last()
            .map(Entry::hash)
            .unwrap_or_else(|| GENESIS.to_string());
        if e.prev != want_prev {
            return Err(bad(
                "does not chain to the entry before it (that one was changed, or this one moved)"
                    .into(),
            ));
        }
        let pk = PublicKey::from_hex(&e.validator).map_err(|err| bad(err.to_string()))?;
        if let Some(want) = pubkey {
            if want != &pk {
                return Err(bad(format!(
                    "signed by {}, not the validator {}",
                    e.validator,
                    want.to_hex()
                )));
            }
        }
        if let Some(first) = out.first() {
            if first.validator != e.validator && pubkey.is_none() {
                return Err(bad(format!(
                    "signed by {}, the ledger's validator is {}",
                    e.validator, first.validator
                )));
            }
        }
        pk.verify_hex(&e.signing_bytes(), &e.signature)
            .map_err(|_| bad("its signature does not match its content".into()))?;
        if let Some(prev) = out.last().filter(|p| p.epoch >= e.epoch) {
            return Err(bad(format!(
                "records epoch {} after epoch {} (a fork: epochs must increase)",
                e.epoch, prev.epoch
            )));
        }
        out.push(e);
    }
    Ok(out)
}

/// Appends a signed entry (the file is checked first and rewritten atomically).
pub fn append(path: &Path, key: &Key, new: NewEntry) -> Result<Entry, Error> {
    for (name, v) in [("loss", new.loss), ("eval loss", new.eval_loss)] {
        if v.is_some_and(|x| !x.is_finite()) {
            return Err(Error::NotFinite(name));
        }
    }
    let mut entries = read(path, Some(&key.public()))?;
    if let Some(last) = entries.last().filter(|l| l.epoch >= new.epoch) {
        return Err(Error::Fork {
            index: last.index,
            last: last.epoch,
            new: new.epoch,
        });
    }
    let mut e = Entry {
        index: entries.len() as u64,
        epoch: new.epoch,
        global_step: new.global_step,
        model: new.model,
        tokens: new.tokens,
        contributors: new.contributors,
        scores: new.scores,
        prev: entries
            .last()
            .map(Entry::hash)
            .unwrap_or_else(|| GENESIS.to_string()),
        validator: key.public().to_hex(),
        loss: new.loss,
        eval_loss: new.eval_loss,
        tag: new.tag,
        signature: String::new(),
    };
    e.signature = hex::encode(key.sign(&e.signing_bytes()));
    entries.push(e.clone());
    let text: String = entries.iter().map(|x| x.line() + "\n").collect();
    crate::fsio::write_atomic(path, text.as_bytes())
        .map_err(|err| Error::Io(path.display().to_string(), err))?;
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(epoch: u64) -> NewEntry {
        NewEntry {
            epoch,
            global_step: epoch + 1,
            model: format!("m{epoch}"),
            tokens: 100 * epoch,
            contributors: vec!["a".into()],
            scores: "s".into(),
            loss: None,
            eval_loss: None,
            tag: None,
        }
    }

    #[test]
    fn chain_and_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ledger.jsonl");
        let k = Key::generate();
        for e in 0..4 {
            append(&p, &k, entry(e)).unwrap();
        }
        assert_eq!(read(&p, Some(&k.public())).unwrap().len(), 4);
        let lines: Vec<String> = std::fs::read_to_string(&p)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        // an edited field
        let mut edited = lines.clone();
        edited[2] = edited[2].replace("\"tokens\":200", "\"tokens\":999");
        std::fs::write(&p, edited.join("\n") + "\n").unwrap();
        let e = read(&p, None).unwrap_err().to_string();
        assert!(e.starts_with("ledger entry 2:"), "{e}");
        // reordered
        let mut swapped = lines.clone();
        swapped.swap(1, 2);
        std::fs::write(&p, swapped.join("\n") + "\n").unwrap();
        assert!(read(&p, None)
            .unwrap_err()
            .to_string()
            .starts_with("ledger entry 1:"));
        // another validator's key
        std::fs::write(&p, lines.join("\n") + "\n").unwrap();
        assert!(append(&p, &Key::generate(), entry(9)).is_err());
        assert!(read(&p, Some(&Key::generate().public())).is_err());
    }

    #[test]
    fn an_epoch_is_recorded_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ledger.jsonl");
        let k = Key::generate();
        for e in 0..3 {
            append(&p, &k, entry(e)).unwrap();
        }
        let before = std::fs::read(&p).unwrap();
        // a validator restarted after appending epoch 2 tries again
        let err = append(&p, &k, entry(2)).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Fork {
                    index: 2,
                    last: 2,
                    new: 2
                }
            ),
            "{err}"
        );
        assert!(append(&p, &k, entry(1)).is_err());
        assert_eq!(
            std::fs::read(&p).unwrap(),
            before,
            "a refused append leaves the file"
        );
        // a fork signed by hand (not through append) is named by read
        let last = read(&p, None).unwrap().pop().unwrap();
        let mut forged = last.clone();
        forged.index = 3;
        forged.prev = last.hash();
        forged.signature = hex::encode(k.sign(&forged.signing_bytes()));
        let mut text = String::from_utf8(before).unwrap();
        text.push_str(&(forged.line() + "\n"));
        std::fs::write(&p, text).unwrap();
        let e = read(&p, None).unwrap_err().to_string();
        assert!(e.contains("ledger entry 3") && e.contains("fork"), "{e}");
    }

    #[test]
    fn losses_and_tag_are_signed_and_older_entries_still_verify() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ledger.jsonl");
        let k = Key::generate();
        append(&p, &k, entry(0)).unwrap();
        let old_line = std::fs::read_to_string(&p).unwrap();
        assert!(!old_line.contains("loss"), "absent fields are not written");
        let mut e1 = entry(1);
        (e1.loss, e1.eval_loss, e1.tag) = (Some(3.25), Some(3.5), Some("2".into()));
        append(&p, &k, e1).unwrap();
        let got = read(&p, Some(&k.public())).unwrap();
        assert_eq!((got[1].loss, got[1].eval_loss), (Some(3.25), Some(3.5)));
        assert_eq!(got[1].tag.as_deref(), Some("2"));
        // an edited loss breaks the signature
        let text = std::fs::read_to_string(&p).unwrap().replace("3.25", "2.25");
        std::fs::write(&p, text).unwrap();
        assert!(read(&p, None)
            .unwrap_err()
            .to_string()
            .contains("signature"));
        let mut bad = entry(5);
        bad.loss = Some(f64::NAN);
        assert!(matches!(append(&p, &k, bad), Err(Error::NotFinite("loss"))));
    }

    #[test]
    fn a_huge_ledger_is_refused_before_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ledger.jsonl");
        let f = std::fs::File::create(&p).unwrap();
        f.set_len(MAX_LEDGER_BYTES + 1).unwrap();
        assert!(matches!(read(&p, None), Err(Error::TooLarge(..))));
    }
}
