//! Membership: how the live members agree on who takes part in an attempt,
//! and whose word counts when one says another is unreachable.
//!
//! Why two stages of flooding: after a failure the members' views differ
//! (one saw a peer go, another not yet). Each member sends whom it lost; at
//! the first stage only a majority removes anyone; by the second, every
//! member has seen the dead peer go or timed out on its sync, so the rows
//! agree and the same rule gives the same members everywhere. Control frames
//! are filed only for a small window of attempts, so made-up attempt numbers
//! cannot grow a peer's memory.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::coordinator::Coordinator;
use super::peers::Peers;
use super::wire::kind;
use super::Error;

/// Control frames for attempts beyond the current one by more than this are dropped.
pub(super) const ATTEMPT_WINDOW: u32 = 2;

/// Control payloads are postcard; at most 64 KiB, nothing left over.
pub(super) fn enc<T: serde::Serialize>(v: &T) -> Vec<u8> {
    postcard::to_allocvec(v).expect("encode")
}

pub(super) fn dec<T: for<'de> serde::Deserialize<'de>>(b: &[u8]) -> Option<T> {
    if b.len() > 65536 {
        return None;
    }
    match postcard::take_from_bytes(b) {
        Ok((v, [])) => Some(v),
        _ => None,
    }
}

/// A membership sync: its stage (1 or 2) and whom the sender cannot reach.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct SyncMsg {
    pub stage: u8,
    pub failed: Vec<u16>,
}

/// Who leaves the round, given each live member's reports (whom it cannot
/// reach). A member is out when a strict majority of the other live members
/// report it. A member whose report is not upheld is out itself: it cannot
/// reach a peer the others still reach, so its own link is the broken one (or
/// it lies). One member alone can therefore evict nobody but itself; a dead
/// peer, which everyone loses, is still dropped; a single broken link between
/// two members drops both ends, as any report-based rule must when neither
/// can be believed over the other.
/// With `judge_reporters` false only the majority rule applies.
pub fn who_leaves(
    live: &[usize],
    reports: &BTreeMap<usize, BTreeSet<usize>>,
    names: &[String],
    judge_reporters: bool,
) -> BTreeMap<usize, String> {
    let others = live.len().saturating_sub(1);
    let reported_by = |p: usize| -> Vec<usize> {
        live.iter()
            .copied()
            .filter(|&r| r != p && reports.get(&r).is_some_and(|s| s.contains(&p)))
            .collect()
    };
    let list = |rs: &[usize]| {
        rs.iter()
            .map(|&r| names[r].as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = BTreeMap::new();
    for &p in live {
        let by = reported_by(p);
        if !by.is_empty() && by.len() * 2 > others {
            out.insert(p, format!("reported by {} (a majority)", list(&by)));
        }
    }
    let majority: BTreeSet<usize> = out.keys().copied().collect();
    if !judge_reporters {
        return out;
    }
    for &r in live.iter().filter(|r| !majority.contains(r)) {
        let unheld = reports
            .get(&r)
            .into_iter()
            .flatten()
            .find(|p| **p != r && live.contains(p) && !majority.contains(p));
        if let Some(&p) = unheld {
            out.insert(
                r,
                format!("reported {}, whom the others still reach", names[p]),
            );
        }
    }
    out
}

/// Misbehaviour on purpose, for tests of the other peers' defences
/// (`DTRAIN_REDUCE_FAULT=false-report:NAME,sync-flood:N,corrupt-chunk,nan-result`):
/// report NAME as unreachable at every sync; send N syncs with random
/// attempt numbers; send the first contribution chunk with a byte no wire
/// format decodes in its place (a trit code above 2 for ternary), signed;
/// send the first result chunk with a NaN in it, signed.
#[derive(Default)]
pub(super) struct Fault {
    pub false_report: Option<usize>,
    pub sync_flood: usize,
    pub corrupt_chunk: bool,
    /// An owner that puts a NaN in the first result chunk it sends.
    pub nan_result: bool,
}

impl Fault {
    pub fn from_env(peers: &Peers) -> Self {
        let mut f = Fault::default();
        let spec = std::env::var("DTRAIN_REDUCE_FAULT").unwrap_or_default();
        for item in spec.split(',').filter(|x| !x.is_empty()) {
            match item.split_once(':') {
                Some(("false-report", name)) => f.false_report = peers.rank(name),
                Some(("sync-flood", n)) => f.sync_flood = n.parse().unwrap_or(0),
                None if item == "corrupt-chunk" => f.corrupt_chunk = true,
                None if item == "nan-result" => f.nan_result = true,
                _ => {}
            }
        }
        f
    }
}

impl Coordinator {
    /// Whom this peer reports as unreachable: those it lost, and what the
    /// round already decided.
    pub fn my_reports(&self) -> Vec<u16> {
        let mut mine: Vec<u16> = self.failed.keys().map(|&r| r as u16).collect();
        if let Some(v) = self.fault.false_report {
            mine.push(v as u16);
        }
        mine
    }

    /// Agrees with the other live members on who takes part in `attempt`.
    pub fn agree(
        &mut self,
        attempt: u32,
        candidates: &BTreeSet<usize>,
    ) -> Result<Vec<usize>, Error> {
        self.window_base = attempt;
        self.syncs.retain(|(a, _), _| *a >= attempt);
        self.dones.retain(|a, _| *a >= attempt);
        self.aborts.retain(|a, _| *a >= attempt);
        for stage in 1..=2u8 {
            let live: Vec<usize> = candidates
                .iter()
                .copied()
                .filter(|r| !self.failed.contains_key(r))
                .collect();
            let mine = self.my_reports();
            for &r in live.iter().filter(|&&r| r != self.me) {
                // (fault injection: the flood goes first, so the receiver
                // must take all of it in before it sees the real sync)
                for _ in 0..self.fault.sync_flood {
                    let mut b = [0u8; 4];
                    let _ = getrandom::getrandom(&mut b);
                    let fake = SyncMsg {
                        stage,
                        failed: vec![],
                    };
                    self.control(r, kind::SYNC, u32::from_le_bytes(b), enc(&fake));
                }
                self.control(
                    r,
                    kind::SYNC,
                    attempt,
                    enc(&SyncMsg {
                        stage,
                        failed: mine.clone(),
                    }),
                );
            }
            let rows = self.collect_syncs(attempt, stage, &live)?;
            // reporters are judged at the second stage only: by then every
            // member has seen a dead peer go (or timed out on its first
            // sync), so the rows agree; at the first, views may still differ
            self.decide(attempt, &live, &mine, rows, stage == 2)?;
        }
        Ok(candidates
            .iter()
            .copied()
            .filter(|r| !self.failed.contains_key(r))
            .collect())
    }

    /// Waits for every live member's sync of this stage (a member that does
    /// not answer in time is failed); returns what each said.
    fn collect_syncs(
        &mut self,
        attempt: u32,
        stage: u8,
        live: &[usize],
    ) -> Result<BTreeMap<usize, Vec<u16>>, Error> {
        // The first sync of a round also waits out the others' connect
        // window: a peer still dialing someone who died before listening
        // cannot answer until that window closes.
        let until = if attempt == 0 && stage == 1 {
            (Instant::now() + self.idle).max(self.connect_until + self.idle)
        } else {
            Instant::now() + self.idle
        };
        loop {
            self.check_deadline("agreeing on the members")?;
            let got = self
                .syncs
                .get(&(attempt, stage))
                .cloned()
                .unwrap_or_default();
            let missing: Vec<usize> = live
                .iter()
                .copied()
                .filter(|&r| r != self.me && !self.failed.contains_key(&r) && !got.contains_key(&r))
                .collect();
            if missing.is_empty() {
                return Ok(got);
            }
            if Instant::now() >= until {
                for r in missing {
                    self.fail(r, attempt, "did not answer the membership sync");
                }
                continue;
            }
            if let Some(ev) = self.pump(Duration::from_millis(20)) {
                self.handle_lost(ev, attempt);
            }
            // data of aborted attempts: drop it and return the credits, so
            // senders are never blocked behind it
            let data = std::mem::take(&mut self.data);
            for (from, frame) in data {
                if frame.attempt < attempt {
                    self.release(from);
                } else {
                    self.data.push_back((from, frame));
                }
            }
        }
    }

    /// Applies [`who_leaves`] to this stage's reports (the same rows on every
    /// member that got them all, so the same answer everywhere).
    fn decide(
        &mut self,
        attempt: u32,
        live: &[usize],
        mine: &[u16],
        rows: BTreeMap<usize, Vec<u16>>,
        judge_reporters: bool,
    ) -> Result<(), Error> {
        let n = self.peers.len();
        // those that did not answer this sync are gone already
        let live: Vec<usize> = live
            .iter()
            .copied()
            .filter(|r| !self.failed.contains_key(r))
            .collect();
        let live = &live[..];
        let mut reports: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
        let rows = rows.into_iter().filter(|(from, _)| live.contains(from));
        for (from, list) in std::iter::once((self.me, mine.to_vec())).chain(rows) {
            let named: BTreeSet<usize> = list
                .into_iter()
                .map(usize::from)
                .filter(|&r| r < n)
                .collect();
            for &r in &named {
                self.reports.insert((attempt, from, r));
            }
            reports.insert(from, named);
        }
        let names: Vec<String> = (0..n).map(|r| self.name(r)).collect();
        for (peer, why) in who_leaves(live, &reports, &names, judge_reporters) {
            if peer == self.me {
                return Err(Error::Excluded(why));
            }
            self.fail(peer, attempt, why);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::who_leaves;
    use std::collections::{BTreeMap, BTreeSet};

    fn run(live: &[usize], reports: &[(usize, usize)]) -> Vec<usize> {
        let mut m: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
        for &(by, about) in reports {
            m.entry(by).or_default().insert(about);
        }
        let names: Vec<String> = (0..8).map(|i| format!("p{i}")).collect();
        who_leaves(live, &m, &names, true).into_keys().collect()
    }

    #[test]
    fn one_member_cannot_evict_another() {
        // p3 says it cannot reach p1; p0 and p2 reach p1: p3 leaves
        assert_eq!(run(&[0, 1, 2, 3], &[(3, 1)]), vec![3]);
        assert_eq!(run(&[0, 1, 2], &[(0, 2)]), vec![0]);
    }

    #[test]
    fn a_peer_everyone_lost_leaves() {
        assert_eq!(run(&[0, 1, 2, 3], &[(0, 3), (1, 3), (2, 3)]), vec![3]);
        // a majority of the others is enough, and those who did not see it stay
        assert_eq!(run(&[0, 1, 2, 3, 4], &[(0, 4), (1, 4), (2, 4)]), vec![4]);
        assert_eq!(run(&[0, 1], &[(0, 1)]), vec![1]);
    }

    #[test]
    fn before_views_agree_only_a_majority_removes() {
        let mut m: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
        m.entry(3).or_default().insert(1);
        let names: Vec<String> = (0..4).map(|i| format!("p{i}")).collect();
        assert!(who_leaves(&[0, 1, 2, 3], &m, &names, false).is_empty());
    }

    #[test]
    fn a_broken_link_drops_both_ends_and_nothing_is_nobody() {
        assert_eq!(run(&[0, 1, 2, 3], &[(0, 1), (1, 0)]), vec![0, 1]);
        assert_eq!(run(&[0, 1, 2], &[]), Vec::<usize>::new());
        // reports about peers already gone, or about oneself, change nothing
        assert_eq!(run(&[0, 1, 2], &[(0, 5), (1, 1)]), Vec::<usize>::new());
    }
}
