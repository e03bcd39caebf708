//! Connecting: a listener that accepts and authenticates the other members'
//! dials, a dialer per member, and the connection phase that pairs both
//! directions of every member into a [`Link`].
//!
//! Why both directions: each ordered pair of members has one connection
//! carrying data one way, so a slow receiver never delays what flows the
//! other way, and the TCP window of each direction is that direction's own.
//! Why the gate: the listener is open to the internet; strangers and floods
//! of stalled dialers must not keep the members out.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::coordinator::{Announced, Coordinator};
use super::handshake::{self, Deadline, Local, Session};
use super::link::{Event, Link};
use super::peers::Peers;
use super::Error;
use crate::keys::Key;

/// What this peer says of itself in every handshake.
pub(super) struct Identity {
    pub round: String,
    pub me: usize,
    pub key: Key,
    pub peers: Peers,
    pub weight: u64,
    pub tokens: u64,
    pub layout: [u8; 32],
}

impl Identity {
    fn local(&self) -> Local<'_> {
        Local {
            round: &self.round,
            me: self.me,
            key: &self.key,
            peers: &self.peers,
            weight: self.weight,
            tokens: self.tokens,
            layout: self.layout,
        }
    }
}

/// An authenticated connection ready for a link: its streams stop timing out
/// on reads (the link's reader waits as long as the round does).
fn ready(s: &TcpStream) {
    let _ = s.set_read_timeout(None);
    let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
}

/// A whole handshake, from the first byte to the session keys, takes at most this.
pub(super) const HANDSHAKE_TIME: Duration = Duration::from_secs(5);

/// Who may start a handshake with this peer, and how many at once.
///
/// Connections from an address that no peer of the file has are closed at
/// once (when every peer's address is an IP; a host name in the file admits
/// any address). Each address may hold [`SLOTS_PER_PEER`] handshakes per peer
/// at that address, and all together at most `4n + 16`: a flood of stalled
/// dialers cannot keep the peers out.
struct Gate {
    allowed: Option<HashSet<IpAddr>>,
    per_ip_cap: HashMap<IpAddr, usize>,
    total_cap: usize,
    held: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

const SLOTS_PER_PEER: usize = 4;

/// A handshake slot, given back on drop.
struct GateSlot {
    gate: Arc<Gate>,
    ip: IpAddr,
}

impl Drop for GateSlot {
    fn drop(&mut self) {
        let mut held = self.gate.held.lock().unwrap_or_else(|e| e.into_inner());
        held.0 -= 1;
        if let Some(n) = held.1.get_mut(&self.ip) {
            *n -= 1;
        }
    }
}

impl Gate {
    fn new(peers: &Peers) -> Self {
        let ips: Vec<Option<IpAddr>> = peers
            .list
            .iter()
            .map(|p| p.addr.parse::<SocketAddr>().ok().map(|a| a.ip()))
            .collect();
        let mut per_ip_cap = HashMap::new();
        for ip in ips.iter().flatten() {
            *per_ip_cap.entry(*ip).or_insert(0) += SLOTS_PER_PEER;
        }
        // a peer behind a relay (or named by host) has no known address: then
        // any address may dial, and the per-address share still bounds it
        let all_ips = ips.iter().all(Option::is_some);
        Gate {
            allowed: all_ips.then(|| per_ip_cap.keys().copied().collect()),
            per_ip_cap,
            total_cap: 4 * peers.len() + 16,
            held: Mutex::new((0, HashMap::new())),
        }
    }

    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<GateSlot> {
        let ip = ip.to_canonical();
        if self.allowed.as_ref().is_some_and(|a| !a.contains(&ip)) {
            return None;
        }
        let cap = self.per_ip_cap.get(&ip).copied().unwrap_or(SLOTS_PER_PEER);
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let mine = held.1.get(&ip).copied().unwrap_or(0);
        if mine >= cap || held.0 >= self.total_cap {
            return None;
        }
        held.0 += 1;
        held.1.insert(ip, mine + 1);
        Some(GateSlot {
            gate: self.clone(),
            ip,
        })
    }
}

/// Accepts the other members' dials until the round stops, each handshake on
/// its own thread and within its slot of the [`Gate`].
pub(super) struct Listener {
    pub listener: TcpListener,
    pub identity: Arc<Identity>,
    /// Set when the round is over.
    pub stop: Arc<AtomicBool>,
    pub events: Sender<Event>,
    /// A handshake takes at most this.
    pub within: Duration,
}

impl Listener {
    /// Binds this peer's address (non-blocking: the loop polls the stop flag).
    pub fn bind(addr: &str) -> Result<TcpListener, Error> {
        let listener = TcpListener::bind(addr).map_err(|e| Error::Listen {
            addr: addr.to_string(),
            why: e.to_string(),
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::Io(addr.to_string(), e))?;
        Ok(listener)
    }

    pub fn run(self) {
        let gate = Arc::new(Gate::new(&self.identity.peers));
        while !self.stop.load(Ordering::Relaxed) {
            let Ok((s, from)) = self.listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            // bounded: strangers are turned away at once, and no address can
            // hold more than its share of slots
            let Some(slot) = gate.admit(from.ip()) else {
                continue;
            };
            let (identity, events, within) =
                (self.identity.clone(), self.events.clone(), self.within);
            std::thread::spawn(move || {
                let _ = s.set_nonblocking(false);
                accept_incoming(s, &identity, within, &events);
                drop(slot);
            });
        }
    }
}

/// For a peer behind a relay: keeps a connection parked at the relay for
/// each other member; each one a dialer is paired with is handshaken as the
/// [`Listener`] would, until the connection phase ends.
pub(super) struct Parker {
    pub relay: String,
    pub identity: Arc<Identity>,
    pub stop: Arc<AtomicBool>,
    pub events: Sender<Event>,
    pub within: Duration,
}

impl Parker {
    pub fn run(self) {
        let this = Arc::new(self);
        let spots = this.identity.peers.len().saturating_sub(1).max(1);
        let threads: Vec<_> = (0..spots)
            .map(|_| {
                let me = this.clone();
                std::thread::spawn(move || me.keep_one_parked())
            })
            .collect();
        for t in threads {
            let _ = t.join();
        }
    }

    fn keep_one_parked(&self) {
        let mut delay = Duration::from_millis(20);
        while !self.stop.load(Ordering::Relaxed) {
            let s = match crate::relay::park(&self.relay, &self.identity.key, &self.stop) {
                Ok(Some(s)) => s,
                Ok(None) => return,
                Err(e) => {
                    tracing::debug!("parking at relay {}: {e}", self.relay);
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_millis(500));
                    continue;
                }
            };
            delay = Duration::from_millis(20);
            accept_incoming(s, &self.identity, self.within, &self.events);
        }
    }
}

/// The handshake of a stream another member opened (accepted here, or
/// paired at the relay): once authenticated, it is that member's incoming link.
fn accept_incoming(s: TcpStream, identity: &Identity, within: Duration, events: &Sender<Event>) {
    if let Ok(session) = handshake::accept(&mut Deadline::new(&s, within), &identity.local()) {
        ready(&s);
        let _ = events.send(Event::Incoming(session, s));
    }
}

/// Dials one member until it answers or the connect window closes.
pub(super) struct Dialer {
    pub peer: usize,
    pub identity: Arc<Identity>,
    pub events: Sender<Event>,
    pub until: Instant,
}

impl Dialer {
    pub fn run(self) {
        let entry = &self.identity.peers.list[self.peer];
        let mut delay = Duration::from_millis(20);
        let mut last = String::from("no attempt");
        while Instant::now() < self.until {
            match self.try_once() {
                Ok((session, s)) => {
                    tracing::debug!("connected to {}", entry.name);
                    ready(&s);
                    let _ = self.events.send(Event::Outgoing(session, s));
                    return;
                }
                Err(why) => last = why.to_string(),
            }
            tracing::debug!(
                "dialing {}: {last}; again in {} ms",
                entry.name,
                delay.as_millis()
            );
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(500));
        }
        tracing::debug!("gave up dialing {}: {last}", entry.name);
        let _ = self.events.send(Event::NoConnection(self.peer, last));
    }

    /// One try at every address the member's name resolves to, or through its relay.
    fn try_once(&self) -> Result<(Session, TcpStream), DialError> {
        let entry = &self.identity.peers.list[self.peer];
        if let Some(relay) = &entry.relay {
            let s =
                crate::relay::dial(relay, &entry.pubkey).map_err(|source| DialError::Connect {
                    addr: format!("{} (relay for {})", relay, entry.name),
                    source,
                })?;
            let mut io = Deadline::new(&s, HANDSHAKE_TIME);
            let session = handshake::initiate(&mut io, &self.identity.local(), self.peer)
                .map_err(DialError::Handshake)?;
            return Ok((session, s));
        }
        let addr = &entry.addr;
        let addrs = addr
            .to_socket_addrs()
            .map_err(|source| DialError::Resolve {
                addr: addr.clone(),
                source,
            })?;
        let mut last = DialError::NoAddress(addr.clone());
        for a in addrs {
            match TcpStream::connect_timeout(&a, Duration::from_secs(2)) {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    let mut io = Deadline::new(&s, HANDSHAKE_TIME);
                    match handshake::initiate(&mut io, &self.identity.local(), self.peer) {
                        Ok(session) => return Ok((session, s)),
                        Err(e) => last = DialError::Handshake(e),
                    }
                }
                Err(source) => {
                    let addr = addr.clone();
                    last = DialError::Connect { addr, source }
                }
            }
        }
        Err(last)
    }
}

/// Why a dial did not end in a session.
#[derive(Debug, thiserror::Error)]
enum DialError {
    #[error("cannot resolve {addr}: {source}")]
    Resolve {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0} resolves to no address")]
    NoAddress(String),
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Handshake(handshake::Error),
}

/// Longest sequence a weight may stand for, in tokens: bounds announced token counts.
const MAX_TOKENS_PER_WEIGHT: u64 = 1 << 20;

/// An announced weight or token count beyond what the peers file allows.
#[derive(Debug, thiserror::Error)]
enum Overweight {
    #[error("announced weight {weight}, above the peers file's max_weight {max}")]
    Weight { weight: u64, max: u64 },
    #[error("announced {tokens} tokens for weight {weight}")]
    Tokens { tokens: u64, weight: u64 },
}

/// A peer's announced weight and tokens, checked against the peers file's
/// cap: a peer announcing more is dropped (it would otherwise dominate the
/// average, or wrap the sum of weights).
fn announced_weight_ok(weight: u64, tokens: u64, max: u64) -> Result<(), Overweight> {
    if weight > max {
        return Err(Overweight::Weight { weight, max });
    }
    if tokens > weight.saturating_mul(MAX_TOKENS_PER_WEIGHT) {
        return Err(Overweight::Tokens { tokens, weight });
    }
    Ok(())
}

/// The sessions of the connection phase, by peer.
#[derive(Default)]
struct Sessions {
    outgoing: HashMap<usize, (Session, TcpStream)>,
    incoming: HashMap<usize, (Session, TcpStream)>,
    dial_failed: BTreeSet<usize>,
}

impl Sessions {
    fn settled(&self, j: usize) -> bool {
        self.dial_failed.contains(&j)
            || (self.outgoing.contains_key(&j) && self.incoming.contains_key(&j))
    }

    /// Both directions are up and both announced `layout`.
    fn same_layout(&self, j: usize, layout: &[u8; 32]) -> bool {
        self.outgoing[&j].0.layout == *layout && self.incoming[&j].0.layout == *layout
    }
}

impl Coordinator {
    /// The connection phase: both directions with every other member, or a
    /// recorded failure, by the end of the connect window; then a link per
    /// member. `events` is the last sender the coordinator holds.
    pub fn connect(&mut self, events: Sender<Event>, layout: [u8; 32]) -> Result<(), Error> {
        let others: Vec<usize> = (0..self.peers.len()).filter(|&j| j != self.me).collect();
        let mut sessions = Sessions::default();
        while !others.iter().all(|&j| sessions.settled(j)) && Instant::now() < self.connect_until {
            match self.events.recv_timeout(Duration::from_millis(20)) {
                Ok(Event::Outgoing(s, st)) => {
                    sessions.outgoing.insert(s.peer, (s, st));
                }
                Ok(Event::Incoming(s, st)) => {
                    sessions.incoming.insert(s.peer, (s, st));
                }
                Ok(Event::NoConnection(j, why)) => {
                    sessions.dial_failed.insert(j);
                    self.fail(j, 0, why);
                }
                _ => {}
            }
        }
        let (same, other): (Vec<usize>, Vec<usize>) = others
            .iter()
            .copied()
            .filter(|&j| sessions.outgoing.contains_key(&j) && sessions.incoming.contains_key(&j))
            .partition(|&j| sessions.same_layout(j, &layout));
        // my group (the same layout, me included) is no larger than the others': I am the odd one
        if !other.is_empty() && same.len() < other.len() {
            let names: Vec<String> = other.iter().map(|&j| self.name(j)).collect();
            return Err(Error::Layout(names.join(", ")));
        }
        let live: Vec<usize> = others
            .into_iter()
            .filter(|j| !self.failed.contains_key(j))
            .collect();
        for j in live {
            match (sessions.outgoing.remove(&j), sessions.incoming.remove(&j)) {
                (Some(out), Some(inc)) => self.start_link(j, out, inc, &events, &layout)?,
                (o, i) => {
                    let why = match (o.is_some(), i.is_some()) {
                        (true, false) => "never connected to this peer",
                        (false, true) => "did not accept this peer's connection",
                        _ => "no connection either way",
                    };
                    self.fail(j, 0, why);
                }
            }
        }
        Ok(())
    }

    /// Checks what member `j` announced and starts its link.
    fn start_link(
        &mut self,
        j: usize,
        outgoing: (Session, TcpStream),
        incoming: (Session, TcpStream),
        events: &Sender<Event>,
        layout: &[u8; 32],
    ) -> Result<(), Error> {
        if outgoing.0.layout != *layout || incoming.0.layout != *layout {
            self.fail(j, 0, "its gradient has another tensor layout or model");
            return Ok(());
        }
        let (weight, tokens) = (incoming.0.weight, incoming.0.tokens);
        if let Err(why) = announced_weight_ok(weight, tokens, self.peers.max_weight) {
            self.fail(j, 0, why.to_string());
            return Ok(());
        }
        self.announced.insert(j, Announced { weight, tokens });
        let link = Link::start(j, outgoing, incoming, &self.sh, events, self.idle)?;
        self.links.insert(j, link);
        Ok(())
    }
}
