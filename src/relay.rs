//! Relays, for peers that cannot accept connections (behind NAT, in a
//! container without an inbound port).
//!
//! Such a peer *parks* connections at a relay: it dials out, names its public
//! key, proves it holds the key (a signed challenge, so no one else can park
//! in its name and take its callers), and waits. Another peer that wants it
//! dials the relay and names the same key; the relay pairs the two streams
//! and from then on copies bytes both ways, nothing else. The reduce
//! handshake and every frame's MAC run end to end between the real peers
//! over the spliced stream, so a relay can drop, delay or garble a link (the
//! link then fails and the round goes on without it) but cannot read session
//! keys or forge a byte.
//!
//! ```text
//! parker → relay:  DTRAIN-RELAY/1 LISTEN <pubkey hex>
//! relay → parker:  CHALLENGE <32 bytes hex>
//! parker → relay:  <ed25519 signature hex of "dtrain relay listen\n" + challenge>
//! relay → parker:  PAIRED                       (when a dialer comes)
//! dialer → relay:  DTRAIN-RELAY/1 DIAL <pubkey hex>
//! relay → dialer:  PAIRED | NONE
//! ```
//! Every line ends in `\n` and is at most [`MAX_LINE`] bytes; each is read
//! within [`LINE_TIME`]. The relay bounds what it holds: parked streams per
//! key and in all, connections per address and in all.
//!
//! Why by hand: a relay is a few lines over std's TCP; a proxy crate would
//! bring an async runtime and still need the pairing.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::keys::{Key, PublicKey};

/// Longest protocol line.
pub const MAX_LINE: usize = 256;
/// A protocol line must arrive within this.
pub const LINE_TIME: Duration = Duration::from_secs(5);
/// How long a dialer waits for a parked stream of its target.
pub const DIAL_WAIT: Duration = Duration::from_secs(5);
/// A parked stream older than this is closed (its owner parks a new one).
pub const PARK_TIME: Duration = Duration::from_secs(120);

const HELLO: &str = "DTRAIN-RELAY/1";
const CHALLENGE_TAG: &[u8] = b"dtrain relay listen\n";

/// What a relay holds at most.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub parked_per_key: usize,
    pub connections: usize,
    pub per_address: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            parked_per_key: 32,
            connections: 1024,
            per_address: 128,
        }
    }
}

/// Reads one `\n`-ended line of at most [`MAX_LINE`] bytes, byte by byte (so
/// nothing after it is consumed), giving up at `until` or when `stop` is set.
fn read_line(
    s: &mut TcpStream,
    until: Option<Instant>,
    stop: Option<&AtomicBool>,
) -> io::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    loop {
        if until.is_some_and(|u| Instant::now() >= u) {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no line in time"));
        }
        if stop.is_some_and(|f| f.load(Ordering::Relaxed)) {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "stopped"));
        }
        match s.read(&mut byte) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) if line.len() >= MAX_LINE => {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"))
            }
            Ok(_) => line.push(byte[0]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    String::from_utf8(line).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8"))
}

fn connect(relay: &str) -> io::Result<TcpStream> {
    let mut last = io::Error::new(
        io::ErrorKind::NotFound,
        format!("{relay} resolves to no address"),
    );
    for a in relay.to_socket_addrs()? {
        match TcpStream::connect_timeout(&a, Duration::from_secs(2)) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn refused(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionRefused, why.to_string())
}

/// Dials `target` through `relay`: a stream spliced to one of its parked ones.
pub fn dial(relay: &str, target: &PublicKey) -> io::Result<TcpStream> {
    let mut s = connect(relay)?;
    s.write_all(format!("{HELLO} DIAL {}\n", target.to_hex()).as_bytes())?;
    let until = Instant::now() + DIAL_WAIT + LINE_TIME;
    match read_line(&mut s, Some(until), None)?.as_str() {
        "PAIRED" => Ok(s),
        _ => Err(refused("the relay has no parked connection of this peer")),
    }
}

/// Parks a stream at `relay` for `key` and waits until a dialer is paired
/// with it (Ok(Some)), or `stop` is set (Ok(None)).
pub fn park(relay: &str, key: &Key, stop: &AtomicBool) -> io::Result<Option<TcpStream>> {
    let mut s = connect(relay)?;
    s.write_all(format!("{HELLO} LISTEN {}\n", key.public().to_hex()).as_bytes())?;
    let line = read_line(&mut s, Some(Instant::now() + LINE_TIME), Some(stop))?;
    let nonce = line
        .strip_prefix("CHALLENGE ")
        .and_then(|h| hex::decode(h).ok())
        .filter(|n| n.len() == 32)
        .ok_or_else(|| refused("the relay sent no challenge"))?;
    let mut msg = CHALLENGE_TAG.to_vec();
    msg.extend(&nonce);
    s.write_all(format!("{}\n", hex::encode(key.sign(&msg))).as_bytes())?;
    match read_line(&mut s, None, Some(stop)) {
        Ok(l) if l == "PAIRED" => Ok(Some(s)),
        Ok(_) => Err(refused("the relay refused to park")),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(None),
        Err(e) => Err(e),
    }
}

/// A parked stream, when it was parked, and its connection slot.
struct Parked {
    stream: TcpStream,
    since: Instant,
    _slot: Slot,
}

impl Parked {
    fn fresh(&self) -> bool {
        self.since.elapsed() < PARK_TIME
    }
}

/// The relay's shared state: parked streams by key, connection counts.
#[derive(Default)]
struct Board {
    parked: HashMap<[u8; 32], VecDeque<Parked>>,
    connections: usize,
    per_address: HashMap<IpAddr, usize>,
}

/// A relay: accepts parkers and dialers, pairs them, splices them.
pub struct Relay {
    listener: TcpListener,
    limits: Limits,
    board: Arc<Mutex<Board>>,
}

/// A connection's place on the board, given back on drop (never drop one
/// while holding the board's lock).
struct Slot {
    board: Arc<Mutex<Board>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut b = lock(&self.board);
        b.connections -= 1;
        if let Some(n) = b.per_address.get_mut(&self.ip) {
            *n -= 1;
        }
    }
}

fn lock(board: &Mutex<Board>) -> std::sync::MutexGuard<'_, Board> {
    board.lock().unwrap_or_else(|e| e.into_inner())
}

impl Relay {
    pub fn bind(addr: &str, limits: Limits) -> io::Result<Self> {
        Ok(Relay {
            listener: TcpListener::bind(addr)?,
            limits,
            board: Arc::default(),
        })
    }

    pub fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until the process ends.
    pub fn run(self) {
        for s in self.listener.incoming().flatten() {
            let Ok(from) = s.peer_addr() else { continue };
            let Some(slot) = self.admit(from.ip()) else {
                continue;
            };
            let (board, limits) = (self.board.clone(), self.limits);
            std::thread::spawn(move || {
                if let Err(e) = serve(s, &board, limits, slot) {
                    tracing::debug!("relay: {from}: {e}");
                }
            });
        }
    }

    fn admit(&self, ip: IpAddr) -> Option<Slot> {
        let ip = ip.to_canonical();
        let mut b = lock(&self.board);
        let mine = b.per_address.get(&ip).copied().unwrap_or(0);
        if b.connections >= self.limits.connections || mine >= self.limits.per_address {
            return None;
        }
        b.connections += 1;
        b.per_address.insert(ip, mine + 1);
        Some(Slot {
            board: self.board.clone(),
            ip,
        })
    }
}

/// One connection: its request line, then parking or dialing.
fn serve(
    mut s: TcpStream,
    board: &Arc<Mutex<Board>>,
    limits: Limits,
    slot: Slot,
) -> io::Result<()> {
    let line = read_line(&mut s, Some(Instant::now() + LINE_TIME), None)?;
    let mut words = line.split(' ');
    let (hello, verb, key) = (words.next(), words.next(), words.next());
    let key = match (hello, key.map(PublicKey::from_hex), words.next()) {
        (Some(HELLO), Some(Ok(k)), None) => k,
        _ => return Err(refused("not a relay request")),
    };
    match verb {
        Some("LISTEN") => park_here(s, key, board, limits, slot),
        Some("DIAL") => dial_here(s, key, board, slot),
        _ => Err(refused("not a relay request")),
    }
}

/// A parker: the challenge, then onto the board (its slot goes with it).
/// Parked streams of one key beyond the limit push out the oldest: a peer
/// re-parking is never locked out by its own stale streams.
fn park_here(
    mut s: TcpStream,
    key: PublicKey,
    board: &Arc<Mutex<Board>>,
    limits: Limits,
    slot: Slot,
) -> io::Result<()> {
    let mut nonce = [0u8; 32];
    getrandom::getrandom(&mut nonce).map_err(io::Error::other)?;
    s.write_all(format!("CHALLENGE {}\n", hex::encode(nonce)).as_bytes())?;
    let sig = read_line(&mut s, Some(Instant::now() + LINE_TIME), None)?;
    let mut msg = CHALLENGE_TAG.to_vec();
    msg.extend(nonce);
    if key.verify_hex(&msg, &sig).is_err() {
        let _ = s.write_all(b"REFUSED\n");
        return Err(refused("a parker without the key it named"));
    }
    let mut gone = Vec::new();
    {
        let mut b = lock(board);
        let queue = b.parked.entry(key.bytes()).or_default();
        let (fresh, stale): (VecDeque<Parked>, VecDeque<Parked>) =
            std::mem::take(queue).into_iter().partition(Parked::fresh);
        *queue = fresh;
        gone.extend(stale);
        if queue.len() >= limits.parked_per_key {
            gone.extend(queue.pop_front());
        }
        queue.push_back(Parked {
            stream: s,
            since: Instant::now(),
            _slot: slot,
        });
    }
    drop(gone);
    Ok(())
}

/// A dialer: a parked stream of its target (waiting up to [`DIAL_WAIT`]), then the splice.
fn dial_here(
    mut s: TcpStream,
    key: PublicKey,
    board: &Arc<Mutex<Board>>,
    slot: Slot,
) -> io::Result<()> {
    let until = Instant::now() + DIAL_WAIT;
    let mut parker = loop {
        if let Some(p) = take_parked(board, &key) {
            break p;
        }
        if Instant::now() >= until {
            let _ = s.write_all(b"NONE\n");
            return Err(refused("no parked stream"));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    parker.stream.write_all(b"PAIRED\n")?;
    s.write_all(b"PAIRED\n")?;
    let Parked {
        stream,
        _slot: parker_slot,
        ..
    } = parker;
    splice(s, stream);
    drop((slot, parker_slot));
    Ok(())
}

/// The oldest fresh parked stream of `key` (stale ones are closed).
fn take_parked(board: &Arc<Mutex<Board>>, key: &PublicKey) -> Option<Parked> {
    let mut gone = Vec::new();
    let found = {
        let mut b = lock(board);
        let queue = b.parked.get_mut(&key.bytes())?;
        loop {
            match queue.pop_front() {
                Some(p) if p.fresh() => break Some(p),
                Some(p) => gone.push(p),
                None => break None,
            }
        }
    };
    drop(gone);
    found
}

/// Copies bytes both ways until either side closes, then closes both.
fn splice(a: TcpStream, b: TcpStream) {
    let _ = a.set_read_timeout(None);
    let _ = b.set_read_timeout(None);
    let (Ok(mut a2), Ok(mut b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let (mut a, mut b) = (a, b);
    let forward = std::thread::spawn(move || {
        let _ = io::copy(&mut a2, &mut b2);
        let _ = b2.shutdown(Shutdown::Write);
    });
    let _ = io::copy(&mut b, &mut a);
    let _ = a.shutdown(Shutdown::Write);
    let _ = forward.join();
    let _ = a.shutdown(Shutdown::Both);
    let _ = b.shutdown(Shutdown::Both);
}
