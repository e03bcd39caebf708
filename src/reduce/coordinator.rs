//! The coordinator: the one thread of a peer that decides. It files what the
//! links receive, fails peers, queues frames for the writers, and runs the
//! attempts ([`super::attempt`]) and membership syncs
//! ([`super::membership`]) on that state.
//!
//! Why one thread: every decision (who failed, which chunk is reduced next,
//! when an attempt ends) is made in one place, in event order, so there are
//! no locks around the round's state; the links' threads only move bytes.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::link::{Event, Item, Link, Shared};
use super::membership::{dec, enc, Fault, SyncMsg, ATTEMPT_WINDOW};
use super::peers::Peers;
use super::transcript::Failure;
use super::wire::{self, kind, Wire};
use super::Error;

/// What a member announced in its handshake.
#[derive(Clone, Copy)]
pub(super) struct Announced {
    /// Its averaging weight (0: it receives without contributing).
    pub weight: u64,
    pub tokens: u64,
}

pub(super) struct Coordinator {
    pub peers: Peers,
    pub me: usize,
    pub sh: Arc<Shared>,
    pub events: Receiver<Event>,
    /// The live links, by rank; a failed peer's link is closed and kept for
    /// its traffic counters.
    pub links: HashMap<usize, Link>,
    /// What every member announced, this peer included.
    pub announced: HashMap<usize, Announced>,
    pub failed: BTreeMap<usize, Failure>,
    /// Who reported whom, as the membership syncs said (for the transcript).
    pub reports: BTreeSet<(u32, usize, usize)>,
    /// Control frames are filed only for attempts from here to two beyond:
    /// a peer cannot grow the maps below with made-up attempt numbers.
    pub window_base: u32,
    pub fault: Fault,
    pub deadline: Instant,
    /// Silence longer than this fails a peer that is owed something.
    pub idle: Duration,
    /// When this peer's connect window closes (the others' closes about then too).
    pub connect_until: Instant,
    // control frames filed by attempt, and data frames in arrival order
    pub syncs: HashMap<(u32, u8), BTreeMap<usize, Vec<u16>>>,
    pub dones: HashMap<u32, BTreeMap<usize, [u8; 32]>>,
    pub aborts: HashMap<u32, BTreeSet<usize>>,
    pub data: VecDeque<(usize, wire::Frame)>,
    pub peak_anon: u64,
    rss_sampled: Instant,
    pub wire: Wire,
    /// Elements per chunk.
    pub chunk: usize,
    pub allow_nonfinite: bool,
    /// Centered clipping radius, when owners clip.
    pub clip: Option<f64>,
}

/// How long a round may take, and its windows.
pub(super) struct Timing {
    pub deadline: Instant,
    pub idle: Duration,
    pub connect_until: Instant,
}

/// Why an attempt stopped.
pub(super) enum Stop {
    Abort,
    NoContributors,
    /// Writing the output failed.
    Io(String),
}

/// The round's settings the coordinator acts on.
pub(super) struct Settings {
    pub fault: Fault,
    pub wire: Wire,
    pub chunk: usize,
    pub allow_nonfinite: bool,
    pub clip: Option<f64>,
}

impl Coordinator {
    pub fn new(
        peers: Peers,
        me: usize,
        sh: Arc<Shared>,
        events: Receiver<Event>,
        mine: Announced,
        timing: Timing,
        settings: Settings,
    ) -> Self {
        Coordinator {
            fault: settings.fault,
            peers,
            me,
            sh,
            events,
            links: HashMap::new(),
            announced: HashMap::from([(me, mine)]),
            failed: BTreeMap::new(),
            reports: BTreeSet::new(),
            window_base: 0,
            deadline: timing.deadline,
            idle: timing.idle,
            connect_until: timing.connect_until,
            syncs: HashMap::new(),
            dones: HashMap::new(),
            aborts: HashMap::new(),
            data: VecDeque::new(),
            peak_anon: 0,
            rss_sampled: Instant::now(),
            wire: settings.wire,
            // whole q8 blocks, so no block straddles two chunks
            chunk: settings.chunk.max(wire::Q8_BLOCK) / wire::Q8_BLOCK * wire::Q8_BLOCK,
            allow_nonfinite: settings.allow_nonfinite,
            clip: settings.clip,
        }
    }

    pub fn name(&self, r: usize) -> String {
        self.peers.list[r].name.clone()
    }

    /// A member's averaging weight (0 for one that announced nothing).
    pub fn weight(&self, r: usize) -> u64 {
        self.announced.get(&r).map_or(0, |a| a.weight)
    }

    pub fn fail(&mut self, peer: usize, attempt: u32, reason: impl Into<String>) {
        if peer == self.me || self.failed.contains_key(&peer) {
            return;
        }
        let f = Failure {
            peer: self.name(peer),
            attempt,
            reason: reason.into(),
        };
        tracing::warn!(
            me = %self.name(self.me),
            "attempt {attempt}: dropped {}: {}",
            f.peer,
            f.reason
        );
        self.failed.insert(peer, f);
        // stop talking to it: its reader and writer threads end on the closed sockets
        if let Some(link) = self.links.get_mut(&peer) {
            link.close();
        }
    }

    pub fn send(&self, to: usize, item: Item) {
        if let Some(w) = self.links.get(&to).and_then(|l| l.writer.as_ref()) {
            let _ = w.send(item);
        }
    }

    pub fn control(&self, to: usize, kind: u8, attempt: u32, payload: Vec<u8>) {
        self.send(
            to,
            Item::Control {
                kind,
                attempt,
                payload,
            },
        );
    }

    /// Gives back the credit of a data frame from `from` that was consumed.
    pub fn release(&self, from: usize) {
        if let Some(l) = self.links.get(&from) {
            l.credits.release();
        }
    }

    pub fn check_deadline(&self, what: &str) -> Result<(), Error> {
        if Instant::now() >= self.deadline {
            return Err(Error::Deadline(what.to_string()));
        }
        Ok(())
    }

    /// Receives one event (or times out after `tick`), filing frames; returns
    /// the events that are not frames.
    pub fn pump(&mut self, tick: Duration) -> Option<Event> {
        // sampled, not read per event: a burst of frames must not wait on /proc
        if self.rss_sampled.elapsed() >= Duration::from_millis(10) {
            self.peak_anon = self.peak_anon.max(anon_rss());
            self.rss_sampled = Instant::now();
        }
        match self.events.recv_timeout(tick) {
            Ok(Event::Frame { from, frame }) => {
                self.file(from, frame);
                None
            }
            Ok(other) => Some(other),
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => None,
        }
    }

    /// Files a received frame: control frames by attempt (within the
    /// window), data frames in arrival order.
    fn file(&mut self, from: usize, frame: wire::Frame) {
        if let Some(l) = self.links.get_mut(&from) {
            l.last_seen = Instant::now();
        }
        let in_window =
            frame.attempt >= self.window_base && frame.attempt - self.window_base <= ATTEMPT_WINDOW;
        match frame.kind {
            kind::SYNC | kind::DONE | kind::ABORT if !in_window => {}
            kind::SYNC => {
                if let Some(m) =
                    dec::<SyncMsg>(&frame.payload).filter(|m| (1..=2).contains(&m.stage))
                {
                    let stage = self.syncs.entry((frame.attempt, m.stage)).or_default();
                    stage.insert(from, m.failed);
                }
            }
            kind::DONE => {
                if let Ok(h) = <[u8; 32]>::try_from(&frame.payload[..]) {
                    self.dones.entry(frame.attempt).or_default().insert(from, h);
                }
            }
            kind::ABORT => {
                // the attempt ends; whom the sender names is only its
                // report: membership is decided at the next sync
                let named: Vec<u16> = dec(&frame.payload).unwrap_or_default();
                self.aborts.entry(frame.attempt).or_default().insert(from);
                for f in named
                    .into_iter()
                    .map(usize::from)
                    .filter(|&f| f < self.peers.len())
                {
                    self.reports.insert((frame.attempt, from, f));
                }
            }
            kind::DATA => self.data.push_back((from, frame)),
            _ => {
                let attempt = self.sh.attempt.load(Ordering::Relaxed);
                self.fail(from, attempt, "sent an unknown frame kind");
            }
        }
    }

    pub fn handle_lost(&mut self, ev: Event, attempt: u32) {
        if let Event::Lost { peer, why } = ev {
            self.fail(peer, attempt, why);
        }
    }

    /// Tells everyone attempt `a` is aborted and why.
    pub fn abort(&mut self, a: u32, members: &[usize]) -> Stop {
        tracing::warn!(me = %self.name(self.me), "aborting attempt {a}");
        // writers drop the aborted attempt's queued data from now on, so the
        // control frames behind it go out at once
        self.sh.attempt.fetch_max(a + 1, Ordering::AcqRel);
        let failed = self.my_reports();
        for &r in members
            .iter()
            .filter(|&&r| r != self.me && !self.failed.contains_key(&r))
        {
            self.control(r, kind::ABORT, a, enc(&failed));
        }
        Stop::Abort
    }

    /// Waits (at most `limit`) until every writer has sent what is queued,
    /// so our Done frames reach the others before this process exits.
    pub fn drain_writers(&self, limit: Duration) {
        let (tx, rx) = channel();
        let n = self
            .links
            .values()
            .filter_map(|l| l.writer.as_ref())
            .filter(|w| w.send(Item::Barrier(tx.clone())).is_ok())
            .count();
        let until = Instant::now() + limit;
        for _ in 0..n {
            let left = until.saturating_duration_since(Instant::now());
            if rx.recv_timeout(left).is_err() {
                break;
            }
        }
    }

    /// Stops every link (the round is over).
    pub fn close_links(&mut self) {
        self.sh.stop.store(true, Ordering::Relaxed);
        for l in self.links.values_mut() {
            l.close();
        }
    }
}

/// Peak anonymous memory of this process (RssAnon is sampled; VmHWM counts mapped files too).
pub(super) fn anon_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("RssAnon:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}
