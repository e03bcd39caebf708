//! Rosters: who takes part in an epoch's round, decided by the validator
//! from the miners' signed announcements, instead of one peers file copied by
//! hand to every machine.
//!
//! ```text
//! miner:     roster announce → push (its repo)          every epoch
//! validator: pull announcements → roster decide → push (model repo, with the tag)
//! everyone:  pull roster.json → roster show --peers-toml → reduce --peers
//! ```
//!
//! Both documents are JSON `{"body": …, "signature": hex}`; the signature is
//! ed25519 over a domain tag and the body's JSON bytes, so an announcement can
//! never be presented as a roster or the reverse. An announcement is signed
//! by the key it announces (the key is the miner's identity; a registry file,
//! the chain's record, may pin which keys hold which uids); a roster by the
//! validator, whose key every participant pins. Each names its epoch: last
//! epoch's announcement or roster is not this epoch's.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::keys::{Key, PublicKey};
use crate::reduce::peers::{self, Peer, Peers};

/// Announcements and rosters are small; a larger file is refused unread.
pub const MAX_FILE: u64 = 1 << 20;

/// Most members a roster may list (the peers file's limit is far above).
pub const MAX_MEMBERS: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Read(#[from] crate::fsio::JsonFileError),
    #[error("{0}: not signed by the pinned key")]
    Signature(String),
    #[error("{what} is for epoch {found}, not epoch {want}")]
    Epoch { what: String, found: u64, want: u64 },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Peers(#[from] peers::Error),
}

/// A document type: its domain tag goes into what is signed.
pub trait Document: Serialize + DeserializeOwned {
    const KIND: &'static str;
}

/// A body and the ed25519 signature over `KIND` + its JSON bytes.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signed<T> {
    pub body: T,
    pub signature: String,
}

fn signing_bytes<T: Document>(body: &T) -> Vec<u8> {
    let mut bytes = format!("dtrain {}\n", T::KIND).into_bytes();
    bytes.extend(serde_json::to_vec(body).expect("json"));
    bytes
}

impl<T: Document> Signed<T> {
    pub fn sign(body: T, key: &Key) -> Self {
        let signature = hex::encode(key.sign(&signing_bytes(&body)));
        Signed { body, signature }
    }

    pub fn verify(&self, key: &PublicKey) -> Result<(), crate::keys::Error> {
        key.verify_hex(&signing_bytes(&self.body), &self.signature)
    }

    /// Reads one (another party's file: bounded, any defect an error).
    pub fn read(path: &Path) -> Result<Self, Error> {
        Ok(crate::fsio::read_json(path, MAX_FILE, T::KIND)?)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("json") + "\n"
    }

    /// The body, once signed by `key` and for the wanted epoch (`epochs`:
    /// the body's, the wanted); `what` names the document in errors.
    fn checked(&self, key: &PublicKey, what: &str, epochs: (u64, u64)) -> Result<T, Error>
    where
        T: Clone,
    {
        if self.verify(key).is_err() {
            return Err(Error::Signature(what.into()));
        }
        let (found, want) = epochs;
        if found != want {
            let what = what.into();
            return Err(Error::Epoch { what, found, want });
        }
        Ok(self.body.clone())
    }
}

/// What a miner says of itself for one epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Announcement {
    pub name: String,
    pub pubkey: PublicKey,
    pub epoch: u64,
    /// Where it accepts reduce connections; None: only through a relay.
    pub addr: Option<String>,
    /// The uid it holds (believed only as the registry allows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u64>,
    /// Measured upload rate in MB/s (a capacity hint: which miners a full
    /// roster keeps; spans stay equal, as a newcomer has no figure yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<f64>,
}

impl Document for Announcement {
    const KIND: &'static str = "announcement";
}

/// Who takes part in an epoch's round, and its rules, as the validator decided.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Roster {
    pub epoch: u64,
    /// The validator's peer name (it is a member, weight 0).
    pub validator: String,
    /// The round's reduce deadline, seconds.
    pub deadline: f64,
    /// Most averaging weight one member may announce.
    pub max_weight: u64,
    /// The members in rank order (addr or relay each).
    pub members: Vec<Peer>,
}

impl Document for Roster {
    const KIND: &'static str = "roster";
}

impl Announcement {
    /// Why this announcement cannot stand (None: it can).
    fn defect(&self) -> Option<String> {
        if let Err(why) = peers::check_name(&self.name) {
            return Some(why);
        }
        if let Some(a) = &self.addr {
            if let Err(why) = peers::check_addr(a) {
                return Some(why);
            }
        }
        if self.upload.is_some_and(|u| !(u > 0.0 && u.is_finite())) {
            return Some("upload must be a positive number".into());
        }
        None
    }
}

/// Reads and checks one announcement: signed by the key it announces, for `epoch`.
pub fn read_announcement(path: &Path, epoch: u64) -> Result<Announcement, Error> {
    let signed: Signed<Announcement> = Signed::read(path)?;
    let what = path.display().to_string();
    let a = signed.checked(&signed.body.pubkey, &what, (signed.body.epoch, epoch))?;
    if let Some(why) = a.defect() {
        return Err(Error::Invalid(format!("{what}: {why}")));
    }
    Ok(a)
}

/// The registry: which key holds which uid (the chain's record; TOML
/// `[[miner]] uid, pubkey, name`). Without one, any signed announcement may
/// join and its uid is its word (unique).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    miner: Vec<RegistryEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryEntry {
    uid: u64,
    pubkey: PublicKey,
    /// The miner's name (its repo): how a validator finds its announcements.
    #[serde(default)]
    #[allow(dead_code)]
    name: Option<String>,
}

/// Keys to uids.
pub struct Registry(BTreeMap<[u8; 32], u64>);

impl Registry {
    pub fn read(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
        let f: RegistryFile = toml::from_str(&text)
            .map_err(|e| Error::Invalid(format!("{}: {}", path.display(), e.message())))?;
        Ok(Registry(
            f.miner.iter().map(|m| (m.pubkey.bytes(), m.uid)).collect(),
        ))
    }
}

/// The validator's rules for an epoch.
pub struct Rules<'a> {
    pub epoch: u64,
    /// The validator's own entry (name, its key, where it listens).
    pub validator: Peer,
    pub registry: Option<&'a Registry>,
    /// Miners left out (e.g. a FAIL streak), by name.
    pub exclude: &'a [String],
    pub max_members: usize,
    /// The relay offered to members that announce no address.
    pub relay: Option<String>,
    pub deadline: f64,
    pub max_weight: u64,
}

/// An announcement left out, and why.
pub struct Skipped {
    pub name: String,
    pub why: String,
}

/// The roster these announcements and rules make, and what was left out.
pub struct Decision {
    pub roster: Roster,
    pub skipped: Vec<Skipped>,
}

/// Decides the epoch's roster: announcements sorted by name; each kept
/// unless the rules leave it out; then the fastest `max_members` (by the
/// announced upload rate, unknown last, ties by name); the validator last.
pub fn decide(mut announcements: Vec<Announcement>, rules: &Rules) -> Decision {
    announcements.sort_by(|a, b| a.name.cmp(&b.name));
    let mut skipped = Vec::new();
    let mut kept: Vec<Peer> = Vec::new();
    let mut kept_upload = Vec::new();
    let mut names = BTreeSet::from([rules.validator.name.clone()]);
    let mut keys = BTreeSet::from([rules.validator.pubkey.bytes()]);
    let mut uids = BTreeSet::new();
    for a in announcements {
        match admit(&a, rules, (&names, &keys, &uids)) {
            Ok(peer) => {
                names.insert(peer.name.clone());
                keys.insert(peer.pubkey.bytes());
                uids.extend(peer.uid);
                kept_upload.push(a.upload.unwrap_or(0.0));
                kept.push(peer);
            }
            Err(why) => skipped.push(Skipped { name: a.name, why }),
        }
    }
    let mut order: Vec<usize> = (0..kept.len()).collect();
    order.sort_by(|&i, &j| kept_upload[j].total_cmp(&kept_upload[i]).then(i.cmp(&j)));
    let chosen: BTreeSet<usize> = order.iter().copied().take(rules.max_members).collect();
    let mut members = Vec::new();
    for (i, peer) in kept.into_iter().enumerate() {
        if chosen.contains(&i) {
            members.push(peer);
        } else {
            let why = format!("the roster is full ({} members)", rules.max_members);
            skipped.push(Skipped {
                name: peer.name,
                why,
            });
        }
    }
    members.push(rules.validator.clone());
    Decision {
        roster: Roster {
            epoch: rules.epoch,
            validator: rules.validator.name.clone(),
            deadline: rules.deadline,
            max_weight: rules.max_weight,
            members,
        },
        skipped,
    }
}

/// The member entry for `a`, or why the rules leave it out. `taken`: the
/// names, keys and uids already in.
fn admit(
    a: &Announcement,
    rules: &Rules,
    taken: (&BTreeSet<String>, &BTreeSet<[u8; 32]>, &BTreeSet<u64>),
) -> Result<Peer, String> {
    let (names, keys, uids) = taken;
    if rules.exclude.contains(&a.name) {
        return Err("excluded by the validator".into());
    }
    if names.contains(&a.name) {
        return Err("another member has this name".into());
    }
    if keys.contains(&a.pubkey.bytes()) {
        return Err("another member has this key".into());
    }
    let uid = match rules.registry {
        Some(reg) => match reg.0.get(&a.pubkey.bytes()) {
            None => return Err("its key is not in the registry".into()),
            Some(&uid) if a.uid.is_some_and(|u| u != uid) => {
                return Err(format!(
                    "it claims uid {}; the registry says {uid}",
                    a.uid.unwrap_or(0)
                ))
            }
            Some(&uid) => Some(uid),
        },
        None => a.uid,
    };
    if uid.is_some_and(|u| uids.contains(&u)) {
        return Err("another member holds its uid".into());
    }
    let (addr, relay) = match (&a.addr, &rules.relay) {
        (Some(addr), _) => (addr.clone(), None),
        (None, Some(relay)) => (String::new(), Some(relay.clone())),
        (None, None) => return Err("it needs a relay and none is offered".into()),
    };
    Ok(Peer {
        name: a.name.clone(),
        addr,
        pubkey: a.pubkey,
        bandwidth: None,
        uid,
        relay,
    })
}

/// Reads a roster and checks it: signed by the pinned validator key, for
/// `epoch`, and a valid peers file (names, keys, addresses).
pub fn read_roster(path: &Path, validator: &PublicKey, epoch: u64) -> Result<Roster, Error> {
    let signed: Signed<Roster> = Signed::read(path)?;
    let what = path.display().to_string();
    let r = signed.checked(validator, &what, (signed.body.epoch, epoch))?;
    if r.members.len() > MAX_MEMBERS {
        return Err(Error::Invalid(format!(
            "{what}: more than {MAX_MEMBERS} members"
        )));
    }
    if !(r.deadline > 0.0 && r.deadline.is_finite()) {
        return Err(Error::Invalid(format!(
            "{what}: the deadline is not a positive number"
        )));
    }
    r.peers(&what)?;
    Ok(r)
}

impl Roster {
    /// The peers file `reduce` reads, checked as reduce checks one.
    pub fn peers(&self, origin: &str) -> Result<Peers, Error> {
        let text = Peers {
            list: self.members.clone(),
            max_weight: self.max_weight,
        }
        .to_toml();
        Ok(Peers::parse(&text, origin)?)
    }
}
