//! The signed record of a reduce round, for validators' participation and
//! bandwidth scores.

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
    pub fn check_signer(&self, peers: &crate::reduce::peers::Peers) -> Result<(), String> {
        if self.signer != self.body.me {
            return Err(format!(
                "signed as '{}' but written by '{}'",
                self.signer.chars().take(64).collect::<String>(),
                self.body.me.chars().take(64).collect::<String>()
            ));
        }
        let Some(rank) = peers.rank(&self.body.me) else {
            return Err("its writer is not in the peers file".into());
        };
        self.verify(Some(&peers.list[rank].pubkey))
            .map_err(|_| "not signed by its writer's key in the peers file".to_string())
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("json") + "\n"
    }

    /// Reads a transcript file (at most [`MAX_FILE`] bytes: it is another party's).
    pub fn read(path: &std::path::Path) -> Result<Self, String> {
        use std::io::Read as _;
        let mut t = String::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_FILE + 1).read_to_string(&mut t))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if t.len() as u64 > MAX_FILE {
            return Err(format!("{}: larger than {MAX_FILE} bytes", path.display()));
        }
        serde_json::from_str(&t).map_err(|e| format!("{}: {e}", path.display()))
    }
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
            Some(peers) => t.check_signer(peers).err(),
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
