//! The signed record of a reduce round, for validators' participation and
//! bandwidth scores.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::keys::{Key, PublicKey};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PeerEntry {
    pub name: String,
    pub rank: usize,
    /// Averaging weight it announced (sequences); None if it never connected.
    pub weight: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Failure {
    pub peer: String,
    pub attempt: u32,
    pub reason: String,
}

/// One member's report, at a membership sync or an abort, that it could not
/// reach another (see `who_leaves`): a report the others did not uphold
/// dropped its maker.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub attempt: u32,
    pub by: String,
    pub about: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SpanRecord {
    pub owner: String,
    pub start: usize,
    pub len: usize,
    /// Contributors in rank order with their weight and, where this peer saw
    /// the bytes (its own span, or its own contribution), their blake3.
    pub contributors: Vec<Contribution>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Contribution {
    pub peer: String,
    pub weight: u64,
    pub blake3: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Traffic {
    pub peer: String,
    /// Bytes this peer sent to / received from that peer (frames, handshake excluded).
    pub sent: u64,
    pub received: u64,
    /// Seconds from the first to the last data frame in each direction.
    pub send_seconds: f64,
    pub recv_seconds: f64,
    /// The link ran through a relay (either end is behind one).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub relayed: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Body {
    pub version: u32,
    pub round: String,
    pub me: String,
    pub wire: String,
    /// Elements per chunk (what contribution and result hashes are computed over).
    pub chunk: usize,
    pub elements: usize,
    pub bytes: u64,
    pub peers: Vec<PeerEntry>,
    pub attempts: u32,
    pub members: Vec<String>,
    pub spans: Vec<SpanRecord>,
    pub traffic: Vec<Traffic>,
    pub failures: Vec<Failure>,
    /// Who reported whom (older transcripts have none).
    #[serde(default)]
    pub reports: Vec<Report>,
    pub sum_weight: u64,
    /// Σ tokens of the contributors (the averaged gradient's `tokens`).
    pub tokens: u64,
    pub result: String,
    /// Peers whose final result hash matched this one.
    pub confirmed_by: Vec<String>,
    pub seconds_connect: f64,
    pub seconds_reduce: f64,
    pub seconds_total: f64,
    pub peak_anon_rss_bytes: u64,
}

/// Largest transcript file read.
pub const MAX_FILE: u64 = 64 << 20;

/// A body, its signer and the ed25519 signature over the body's JSON bytes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Transcript {
    pub body: Body,
    pub signer: String,
    pub pubkey: PublicKey,
    pub signature: String,
}

impl Transcript {
    pub fn sign(body: Body, key: &Key) -> Self {
        let bytes = serde_json::to_vec(&body).expect("json");
        Transcript {
            signer: body.me.clone(),
            pubkey: key.public(),
            signature: hex::encode(key.sign(&bytes)),
            body,
        }
    }

    /// Checks the signature (and, if given, that the key is the expected one).
    pub fn verify(&self, expected: Option<&PublicKey>) -> Result<(), crate::keys::Error> {
        if let Some(k) = expected {
            if k != &self.pubkey {
                return Err(crate::keys::Error::BadSignature);
            }
        }
        let bytes = serde_json::to_vec(&self.body).expect("json");
        self.pubkey.verify_hex(&bytes, &self.signature)
    }

    /// Checks that the transcript is signed by the key `peers` pins for the
    /// peer it says wrote it (`signer` = `me` = a peer of the file).
    pub fn check_signer(&self, peers: &crate::reduce::peers::Peers) -> Result<(), Untrusted> {
        if self.signer != self.body.me {
            return Err(Untrusted::OtherSigner {
                signer: self.signer.chars().take(64).collect(),
                writer: self.body.me.chars().take(64).collect(),
            });
        }
        let Some(rank) = peers.rank(&self.body.me) else {
            return Err(Untrusted::NotAPeer);
        };
        self.verify(Some(&peers.list[rank].pubkey))
            .map_err(|_| Untrusted::WrongKey)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("json") + "\n"
    }

    /// Reads a transcript file (at most [`MAX_FILE`] bytes: it is another party's).
    pub fn read(path: &Path) -> Result<Self, ReadError> {
        crate::fsio::read_json(path, MAX_FILE, "transcript")
    }

    /// Reads every file of `paths`: the transcripts that parse, and why each
    /// other one does not (another party's files: one bad file stops nothing).
    pub fn read_all(paths: &[PathBuf]) -> (Vec<Transcript>, Vec<ReadError>) {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for p in paths {
            match Transcript::read(p) {
                Ok(t) => good.push(t),
                Err(e) => bad.push(e),
            }
        }
        (good, bad)
    }
}

/// Why a transcript file could not be read.
pub type ReadError = crate::fsio::JsonFileError;

/// Why a transcript is not believed.
#[derive(Debug, thiserror::Error)]
pub enum Untrusted {
    #[error("signed as '{signer}' but written by '{writer}'")]
    OtherSigner { signer: String, writer: String },
    #[error("its writer is not in the peers file")]
    NotAPeer,
    #[error("not signed by its writer's key in the peers file")]
    WrongKey,
}

/// The transcripts worth believing: signed by the key the peers file pins for
/// the peer each one says wrote it. Returns them and a note for each other.
pub fn trusted<'a>(
    transcripts: &'a [Transcript],
    peers: Option<&crate::reduce::peers::Peers>,
) -> (Vec<&'a Transcript>, Vec<String>) {
    let mut good = Vec::new();
    let mut ignored = Vec::new();
    for t in transcripts {
        let why = match peers {
            None => Some("no peers file to check its signer against".to_string()),
            Some(peers) => t.check_signer(peers).err().map(|e| e.to_string()),
        };
        match why {
            None => good.push(t),
            Some(why) => ignored.push(format!(
                "{}'s transcript: {why}",
                t.body.me.chars().take(64).collect::<String>()
            )),
        }
    }
    (good, ignored)
}
