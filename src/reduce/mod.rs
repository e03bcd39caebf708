//! `reduce`: butterfly all-reduce of memory-mapped gradient files over TCP.
//!
//! # The round
//!
//! Peers (PEERS.toml, rank = position) average their gradients so that every
//! peer applies the same update: AVG = Σ wᵢ·gᵢ / Σ wᵢ over the contributors,
//! wᵢ = the `sequences` in gᵢ's metadata. The flat f32 data region is cut into
//! one contiguous span per member ([`peers::Plan`]); the member of rank i owns
//! span i. Phase 1: every contributor streams its copy of span j to owner j in
//! chunks. Phase 2: each owner streams its averaged span to every member. Each
//! peer sends and receives 2(n−1)/n·S bytes. Chunks pipeline: an owner reduces
//! chunk c as soon as every contribution to it arrived and sends it on while
//! the next chunks are still on the wire.
//!
//! # Exactness and determinism
//!
//! An owner adds wᵢ·gᵢ in f64, in rank order whatever order the bytes arrived
//! in, and rounds once to f32; so the result's bits do not depend on timing,
//! and it is more exact than an f32 ring. Owners write their span's result as
//! every receiver will decode it (bf16 and q8 are quantised once, by the
//! owner), so every member ends with byte-identical output. A per-sender credit
//! of [`CREDITS`] unconsumed chunks bounds the buffering: memory stays a few
//! chunks per peer, whatever the vector's size; inputs and outputs are
//! memory-mapped.
//!
//! # Where the time goes
//!
//! On one host every byte costs a kernel copy at each end, a blake3 pass at
//! each end (the frame MACs) and, at its owner, the f64 sum. So the owner sums
//! contributions in place in the received frames (bf16 and q8 are decoded
//! inside the sum), writes the mean and decodes received results straight into
//! the output mapping (blocks reserved and pages mapped in while the peers
//! connect), checks finiteness in the same passes, and the few loops over
//! whole chunks are compiled for AVX-512 and AVX2 as well ([`crate::simd`]).
//!
//! # Connections and security
//!
//! Each member dials every other member ([`handshake`]: mutual ed25519
//! authentication over nonces, round id and ephemeral X25519 keys) and accepts
//! their dials, so each ordered pair has one connection carrying data one way.
//! Frames carry a keyed blake3 MAC and have a hard size cap ([`wire`]).
//!
//! # Failures
//!
//! Silence beyond a timeout derived from `--deadline`, a broken connection, a
//! bad frame or a non-finite contribution marks a peer failed. The attempt is
//! aborted everywhere (Abort frames), the survivors agree on the new member set
//! (two rounds of flooding their failure sets) and the round restarts with
//! them: the dead peer's contributions are gone and its span is re-reduced by
//! the new plan's owners. A peer finishes only after it holds the whole result
//! and every live member confirmed the same result hash (Done frames); by the
//! deadline a peer has either finished with that identical result or exits
//! non-zero without writing `--out`.

pub mod handshake;
pub mod peers;
pub mod transcript;
pub mod wire;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::io::{BufReader, BufWriter, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::keys::Key;
use crate::tensors::{GradMeta, TensorFile, TensorWriter};
use handshake::{Deadline, Local, Session};
use peers::{Peers, Plan};
use transcript::{Body, Contribution, Failure, PeerEntry, SpanRecord, Traffic, Transcript};
use wire::{kind, MacKey, Wire};

/// Unconsumed data chunks a sender may have in flight to one receiver.
pub const CREDITS: usize = 4;
/// Elements per chunk (2 MiB of f32; fits a frame in every wire format).
pub const DEFAULT_CHUNK: usize = 1 << 19;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Tensors(#[from] crate::tensors::Error),
    #[error(transparent)]
    Peers(#[from] peers::Error),
    #[error("'{0}' is not in the peers file")]
    NotAPeer(String),
    #[error("--key is not {name}'s key: the peers file pins {name} to {pinned}, the key's public half is {have}")]
    WrongKey {
        name: String,
        pinned: String,
        have: String,
    },
    #[error("cannot listen on {addr}: {why}")]
    Listen { addr: String, why: String },
    #[error("the input contains NaN or Inf (use --allow-nonfinite to send it anyway)")]
    NonFinite,
    #[error("no contributor with a positive weight is left in the round")]
    NoContributors,
    #[error("this peer was excluded from the round by the others ({0})")]
    Excluded(String),
    #[error("round failed: peers disagree on the result ({0})")]
    Mismatch(String),
    #[error("round did not finish before the deadline ({0})")]
    Deadline(String),
    #[error(
        "this peer's gradient has another tensor layout or model than {0} of the peers it reached"
    )]
    Layout(String),
    #[error("only {members} peer(s) are left in the round, fewer than --min-peers {min}{failed}")]
    TooFew {
        members: usize,
        min: usize,
        /// "; NAME: why" for each peer that failed
        failed: String,
    },
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0}")]
    Weight(String),
}

/// What one peer does in a round.
pub struct Config {
    pub peers: Peers,
    pub me: String,
    pub key: Key,
    pub round: String,
    pub input: PathBuf,
    pub output: PathBuf,
    pub wire: Wire,
    pub deadline: Duration,
    /// Overrides the averaging weight from the input's metadata (0: receive only).
    pub weight: Option<u64>,
    pub allow_nonfinite: bool,
    /// Centered clipping radius (RMS per element), owners apply it.
    pub clip: Option<f64>,
    /// Egress limit in bytes per second.
    pub max_rate: Option<f64>,
    pub chunk: usize,
    /// Transport floor (benchmarks): same connections and bytes, no MAC, no arithmetic.
    pub floor: bool,
    /// Members needed to finish (default: a majority of the peers file), so a
    /// partitioned minority cannot finish on its own and diverge.
    pub min_peers: Option<usize>,
}

/// What a finished round produced.
pub struct Outcome {
    pub transcript: Transcript,
}

// ---------------------------------------------------------------------------
// shared state between the coordinator, readers and writers

/// The output's f32 data region: writers read this peer's span from it. The
/// coordinator writes a region (in the mapping, or with pwrite) before it enqueues
/// frames that read it and never rewrites it in the same attempt; a new attempt
/// takes `epoch` for writing, which waits for writers still sending the
/// previous attempt's data.
#[derive(Clone, Copy)]
struct OutBuf {
    ptr: *mut f32,
    len: usize,
}
// SAFETY: see the type's comment: disjoint regions, ordered by the epoch lock.
unsafe impl Send for OutBuf {}
unsafe impl Sync for OutBuf {}

impl OutBuf {
    /// SAFETY: no one may be writing the region.
    unsafe fn region(&self, start: usize, len: usize) -> &[f32] {
        assert!(start + len <= self.len);
        std::slice::from_raw_parts(self.ptr.add(start), len)
    }

    /// SAFETY: only the coordinator writes, and no writer reads the region
    /// until the coordinator enqueues it (or a new attempt took the epoch).
    #[allow(clippy::mut_from_ref)]
    unsafe fn region_mut(&self, start: usize, len: usize) -> &mut [f32] {
        assert!(start + len <= self.len);
        std::slice::from_raw_parts_mut(self.ptr.add(start), len)
    }
}

/// Egress token bucket shared by all writers.
struct RateLimit {
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimit {
    fn take(&self, bytes: u64) {
        let mut s = self.state.lock().unwrap();
        let now = Instant::now();
        let (ref mut tokens, ref mut last) = *s;
        *tokens =
            (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(self.rate * 0.05);
        *last = now;
        *tokens -= bytes as f64;
        if *tokens < 0.0 {
            let wait = (-*tokens / self.rate).min(60.0);
            drop(s);
            std::thread::sleep(Duration::from_secs_f64(wait));
        }
    }
}

/// (attempt, owner) → (chunk, payload hash) of the phase-1 frames sent.
type SentHashes = HashMap<(u32, usize), Vec<(usize, [u8; 32])>>;

struct Shared {
    input: Arc<TensorFile>,
    out: OutBuf,
    wire: Wire,
    floor: bool,
    attempt: AtomicU32,
    epoch: RwLock<()>,
    rate: Option<RateLimit>,
    stop: AtomicBool,
    /// Hashes of the phase-1 chunks this peer sent: (attempt, owner) → (chunk, hash).
    sent: Mutex<SentHashes>,
    /// The output's blocks are reserved and its pages mapped in: results go
    /// straight into the mapping. Otherwise (file systems without fallocate)
    /// they are written with pwrite, which takes no zero-filled page faults.
    direct: bool,
    /// The output file and the offset of its data region, for positional writes.
    out_file: std::fs::File,
    out_data: u64,
    /// Frame buffers recycled between readers and the coordinator.
    pool: Mutex<Vec<Vec<u8>>>,
}

impl Shared {
    fn buffer(&self) -> Vec<u8> {
        self.pool.lock().unwrap().pop().unwrap_or_default()
    }

    fn recycle(&self, v: Vec<u8>) {
        let mut p = self.pool.lock().unwrap();
        if p.len() < 64 && v.capacity() > 0 {
            p.push(v);
        }
    }

    /// Stores result values for elements `start..` of the output: with pwrite,
    /// or nothing to do where the output is mapped in (`direct`), since the
    /// values were then computed or decoded in the mapping itself.
    fn store(&self, start: usize, values: &[f32]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        if self.direct {
            debug_assert!(std::ptr::eq(
                values.as_ptr(),
                self.out.ptr.wrapping_add(start)
            ));
            return Ok(());
        }
        self.out_file
            .write_all_at(wire::f32_bytes(values), self.out_data + start as u64 * 4)
    }
}

/// Per-peer traffic counters.
#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    received: AtomicU64,
    first_send: Mutex<Option<Instant>>,
    last_send: Mutex<Option<Instant>>,
    first_recv: Mutex<Option<Instant>>,
    last_recv: Mutex<Option<Instant>>,
}

impl Counters {
    fn mark(first: &Mutex<Option<Instant>>, last: &Mutex<Option<Instant>>) {
        let now = Instant::now();
        first.lock().unwrap().get_or_insert(now);
        *last.lock().unwrap() = Some(now);
    }
    fn span(first: &Mutex<Option<Instant>>, last: &Mutex<Option<Instant>>) -> f64 {
        match (*first.lock().unwrap(), *last.lock().unwrap()) {
            (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
            _ => 0.0,
        }
    }
}

/// Credits a reader holds for unconsumed data frames.
struct Credits {
    used: Mutex<usize>,
    cv: Condvar,
}

impl Credits {
    fn acquire(&self, stop: &AtomicBool) {
        let mut u = self.used.lock().unwrap();
        while *u >= CREDITS && !stop.load(Ordering::Relaxed) {
            u = self
                .cv
                .wait_timeout(u, Duration::from_millis(100))
                .unwrap()
                .0;
        }
        *u += 1;
    }
    fn release(&self) {
        let mut u = self.used.lock().unwrap();
        *u = u.saturating_sub(1);
        self.cv.notify_one();
    }
}

/// Data frame header inside the payload: phase, a pad byte, owner rank (u16),
/// chunk index (u32). Eight bytes, so the numbers after it stay 8-aligned in
/// the receive buffer and f32 chunks can be read in place.
const DATA_HDR: usize = 8;

fn data_header(phase: u8, owner: usize, chunk: usize) -> [u8; DATA_HDR] {
    let mut h = [0u8; DATA_HDR];
    h[0] = phase;
    h[2..4].copy_from_slice(&(owner as u16).to_le_bytes());
    h[4..8].copy_from_slice(&(chunk as u32).to_le_bytes());
    h
}

/// f32 values of a received chunk: in place when the wire is f32 and the
/// bytes are aligned, decoded into `scratch` otherwise.
fn chunk_values<'a>(
    wire: Wire,
    body: &'a [u8],
    n: usize,
    scratch: &'a mut Vec<f32>,
) -> Result<&'a [f32], String> {
    if wire == Wire::F32 && body.len() == 4 * n && (body.as_ptr() as usize).is_multiple_of(4) {
        // SAFETY: aligned, exactly n values, every bit pattern is an f32; little-endian machine.
        return Ok(unsafe { std::slice::from_raw_parts(body.as_ptr() as *const f32, n) });
    }
    scratch.resize(n, 0.0);
    wire.decode(body, &mut scratch[..n])?;
    Ok(&scratch[..n])
}

crate::simd_fn! {
    /// True when every value is finite (a branch-free count that vectorises,
    /// unlike a short-circuiting `all`).
    pub fn all_finite(v: &[f32]) -> bool {
        v.iter().map(|&x| wire::nonfinite(x)).sum::<u32>() == 0
    }
}

/// Elements per accumulation tile: a 32 KiB f64 block that stays in L1.
const TILE: usize = 4096;
const _: () = assert!(
    TILE.is_multiple_of(wire::Q8_BLOCK),
    "q8 blocks must not straddle tiles"
);

/// One chunk of a contribution: f32 values, or bf16 / q8 wire bytes that are
/// decoded inside the weighted sum (no decoded copy is written and read back).
#[derive(Clone, Copy)]
pub enum Values<'a> {
    F32(&'a [f32]),
    Bf16(&'a [u16]),
    /// q8 blocks as on the wire: an f32 scale, then [`wire::Q8_BLOCK`] i8 values.
    Q8(&'a [u8]),
}

impl<'a> Values<'a> {
    /// The values in `body` (`n` of them, its length checked by the caller),
    /// in place where the format and alignment allow, else decoded into
    /// `scratch`; always f32 when `as_f32`.
    fn of(wire: Wire, body: &'a [u8], n: usize, scratch: &'a mut Vec<f32>, as_f32: bool) -> Self {
        if !as_f32 {
            match wire {
                Wire::Q8 => return Values::Q8(body),
                Wire::Bf16 => {
                    // SAFETY: any two bytes are a valid u16 (little-endian machine)
                    if let ([], mid, []) = unsafe { body.align_to::<u16>() } {
                        return Values::Bf16(mid);
                    }
                }
                Wire::F32 => {}
            }
        }
        Values::F32(chunk_values(wire, body, n, scratch).expect("length checked"))
    }

    fn all_finite(&self) -> bool {
        match *self {
            Values::F32(v) => all_finite(v),
            Values::Bf16(v) => v.iter().all(|&b| b & 0x7f80 != 0x7f80),
            // decoded: a hostile scale can overflow a finite one
            Values::Q8(b) => {
                let mut v = vec![0f32; b.len() - b.len().div_ceil(wire::Q8_BLOCK + 4) * 4];
                Wire::Q8.decode_checked(b, &mut v).unwrap_or(false)
            }
        }
    }
}

crate::simd_fn! {
    /// Σ wᵢ·xᵢ / Σ wᵢ, summed in f64 in the given (rank) order and rounded once.
    /// A bf16 or q8 value enters the sum exactly as its decoded f32 would.
    /// Returns whether every output value is finite (checked in the same pass).
    pub fn weighted_mean_of(views: &[(u64, Values)], sum_w: u64, out: &mut [f32]) -> bool {
        const QB: usize = wire::Q8_BLOCK;
        let inv = sum_w as f64;
        let mut acc = [0f64; TILE];
        let mut bad = 0u32;
        for t in (0..out.len()).step_by(TILE) {
            let n = TILE.min(out.len() - t);
            let acc = &mut acc[..n];
            acc.fill(0.0);
            for (w, v) in views {
                let wf = *w as f64;
                match *v {
                    Values::F32(v) => {
                        for (a, &x) in acc.iter_mut().zip(&v[t..t + n]) {
                            *a += wf * x as f64;
                        }
                    }
                    Values::Bf16(v) => {
                        for (a, &b) in acc.iter_mut().zip(&v[t..t + n]) {
                            *a += wf * f32::from_bits((b as u32) << 16) as f64;
                        }
                    }
                    Values::Q8(bytes) => {
                        // TILE is a multiple of the block: tiles start on a block
                        for (k, a) in (t..t + n).step_by(QB).zip(acc.chunks_mut(QB)) {
                            let blk = &bytes[k / QB * (QB + 4)..];
                            let scale = f32::from_le_bytes(blk[..4].try_into().unwrap());
                            for (a, &q) in a.iter_mut().zip(&blk[4..]) {
                                *a += wf * ((q as i8) as f32 * scale) as f64;
                            }
                        }
                    }
                }
            }
            for (o, &a) in out[t..t + n].iter_mut().zip(acc.iter()) {
                *o = (a / inv) as f32;
                bad |= wire::nonfinite(*o);
            }
        }
        bad == 0
    }
}

/// Σ wᵢ·xᵢ / Σ wᵢ of f32 vectors (see [`weighted_mean_of`]).
pub fn weighted_mean(views: &[(u64, &[f32])], sum_w: u64, out: &mut [f32]) {
    let v: Vec<(u64, Values)> = views.iter().map(|&(w, x)| (w, Values::F32(x))).collect();
    weighted_mean_of(&v, sum_w, out);
}

enum Item {
    Control {
        kind: u8,
        attempt: u32,
        payload: Vec<u8>,
    },
    /// My contribution to `owner`'s span: elements [start, start+len) of the input.
    Phase1 {
        attempt: u32,
        owner: usize,
        chunk: usize,
        start: usize,
        len: usize,
    },
    /// My span's result: elements [start, start+len) of the output, whose
    /// payload hash the coordinator computed once for every receiver.
    Phase2 {
        attempt: u32,
        owner: usize,
        chunk: usize,
        start: usize,
        len: usize,
        hash: [u8; 32],
    },
    /// Acknowledged once everything queued before it was sent.
    Barrier(Sender<()>),
}

enum Event {
    Incoming(Session, TcpStream),
    Outgoing(Session, TcpStream),
    NoConnection(usize, String),
    Frame { from: usize, frame: wire::Frame },
    Lost { peer: usize, why: String },
}

/// Control payloads are postcard; at most 64 KiB, nothing left over.
fn enc<T: serde::Serialize>(v: &T) -> Vec<u8> {
    postcard::to_allocvec(v).expect("encode")
}
fn dec<T: for<'de> serde::Deserialize<'de>>(b: &[u8]) -> Option<T> {
    if b.len() > 65536 {
        return None;
    }
    match postcard::take_from_bytes(b) {
        Ok((v, [])) => Some(v),
        _ => None,
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SyncMsg {
    stage: u8,
    failed: Vec<u16>,
}

fn writer_loop(
    mut stream: BufWriter<TcpStream>,
    mut key: MacKey,
    rx: Receiver<Item>,
    sh: Arc<Shared>,
    c: Arc<Counters>,
    peer: usize,
    events: Sender<Event>,
) {
    let mut buf = Vec::new();
    while let Ok(item) = rx.recv() {
        let current = sh.attempt.load(Ordering::Acquire);
        let r = match item {
            Item::Barrier(ack) => {
                let _ = stream.flush();
                let _ = ack.send(());
                continue;
            }
            Item::Control {
                kind,
                attempt,
                payload,
            } => key
                .write_frame(&mut stream, kind, attempt, &[&payload])
                .map(|(n, _)| n),
            Item::Phase1 {
                attempt,
                owner,
                chunk,
                start,
                len,
            }
            | Item::Phase2 {
                attempt,
                owner,
                chunk,
                start,
                len,
                ..
            } => {
                if attempt != current {
                    continue; // stale: the attempt was aborted
                }
                let phase1 = matches!(item, Item::Phase1 { .. });
                let prehashed = match item {
                    Item::Phase2 { hash, .. } => Some(hash),
                    _ => None,
                };
                let _epoch = sh.epoch.read().unwrap();
                let hdr = data_header(if phase1 { 1 } else { 2 }, owner, chunk);
                let values: &[f32] = if phase1 || sh.floor {
                    &sh.input.flat_f32().expect("checked")[start..start + len]
                } else {
                    // SAFETY: result regions are final before they are enqueued (see OutBuf).
                    unsafe { sh.out.region(start, len) }
                };
                let payload: &[u8] = match sh.wire {
                    Wire::F32 => wire::f32_bytes(values),
                    w => w.encode_to(values, &mut buf),
                };
                if let Some(rl) = &sh.rate {
                    rl.take((payload.len() + DATA_HDR) as u64);
                }
                let r = match prehashed {
                    Some(h) => key.write_frame_hashed(
                        &mut stream,
                        kind::DATA,
                        attempt,
                        &[&hdr, payload],
                        h,
                    ),
                    None => key.write_frame(&mut stream, kind::DATA, attempt, &[&hdr, payload]),
                };
                Counters::mark(&c.first_send, &c.last_send);
                if let (true, Ok((_, h))) = (phase1, &r) {
                    sh.sent
                        .lock()
                        .unwrap()
                        .entry((attempt, owner))
                        .or_default()
                        .push((chunk, *h));
                }
                r.map(|(n, _)| n)
            }
        };
        // frames are large and control frames must not wait: flush each one
        match r.and_then(|n| stream.flush().map(|_| n)) {
            Ok(n) => {
                c.sent.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                if !sh.stop.load(Ordering::Relaxed) {
                    let _ = events.send(Event::Lost {
                        peer,
                        why: format!("sending failed: {e}"),
                    });
                }
                return;
            }
        }
    }
}

fn reader_loop(
    stream: TcpStream,
    mut key: MacKey,
    sh: Arc<Shared>,
    c: Arc<Counters>,
    credits: Arc<Credits>,
    peer: usize,
    events: Sender<Event>,
) {
    // small: 2 MiB payloads bypass the buffer and land in the frame buffer directly
    let mut r = BufReader::with_capacity(64 << 10, stream);
    loop {
        credits.acquire(&sh.stop);
        match key.read_frame_into(&mut r, sh.buffer()) {
            Ok(frame) => {
                c.received
                    .fetch_add((frame.payload.len() + 25) as u64, Ordering::Relaxed);
                if frame.kind == kind::DATA {
                    Counters::mark(&c.first_recv, &c.last_recv);
                } else {
                    // only data frames hold credits
                    credits.release();
                    // a control frame for an attempt far from ours is dropped
                    // here, before it can queue up (the coordinator files
                    // only a small window of attempts anyway)
                    let ours = sh.attempt.load(Ordering::Relaxed);
                    if frame.attempt.saturating_add(1) < ours
                        || frame.attempt > ours.saturating_add(ATTEMPT_WINDOW + 1)
                    {
                        sh.recycle(frame.payload);
                        continue;
                    }
                }
                if events.send(Event::Frame { from: peer, frame }).is_err() {
                    return;
                }
            }
            Err(e) => {
                if !sh.stop.load(Ordering::Relaxed) {
                    let why = match &e {
                        wire::FrameError::Io(io)
                            if io.kind() == std::io::ErrorKind::UnexpectedEof =>
                        {
                            "closed the connection".to_string()
                        }
                        e => format!("receiving failed: {e}"),
                    };
                    let _ = events.send(Event::Lost { peer, why });
                }
                return;
            }
        }
    }
}

/// Peak anonymous memory of this process (RssAnon is sampled; VmHWM counts mapped files too).
fn anon_rss() -> u64 {
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

fn layout_digest(f: &TensorFile, model: &str) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("dtrain reduce layout v1");
    h.update(model.as_bytes());
    for e in f.entries() {
        h.update(e.spec.name.as_bytes());
        h.update(&[0]);
        for d in &e.spec.shape {
            h.update(&(*d as u64).to_le_bytes());
        }
    }
    *h.finalize().as_bytes()
}

struct Coordinator {
    cfg_peers: Peers,
    me: usize,
    sh: Arc<Shared>,
    events: Receiver<Event>,
    writers: HashMap<usize, Sender<Item>>,
    credits: HashMap<usize, Arc<Credits>>,
    counters: HashMap<usize, Arc<Counters>>,
    streams: HashMap<usize, Vec<TcpStream>>,
    /// Who reported whom, as the membership syncs said (for the transcript).
    reports: BTreeSet<(u32, usize, usize)>,
    /// Control frames are filed only for attempts from here to two beyond:
    /// a peer cannot grow the maps below with made-up attempt numbers.
    window_base: u32,
    fault: Fault,
    weights: HashMap<usize, (u64, u64)>,
    failed: BTreeMap<usize, Failure>,
    deadline: Instant,
    idle: Duration,
    last_seen: HashMap<usize, Instant>,
    // buffered messages
    syncs: HashMap<(u32, u8), BTreeMap<usize, Vec<u16>>>,
    dones: HashMap<u32, BTreeMap<usize, [u8; 32]>>,
    aborts: HashMap<u32, BTreeSet<usize>>,
    data: VecDeque<(usize, wire::Frame)>,
    peak_anon: u64,
    rss_sampled: Instant,
    wire: Wire,
    chunk: usize,
    allow_nonfinite: bool,
    clip: Option<f64>,
    /// When this peer's connect window closes (the others' closes about then too).
    connect_until: Instant,
}

/// Why an attempt stopped.
enum Stop {
    Abort,
    NoContributors,
    /// Writing the output failed.
    Io(String),
}

impl Coordinator {
    fn name(&self, r: usize) -> String {
        self.cfg_peers.list[r].name.clone()
    }

    fn fail(&mut self, peer: usize, attempt: u32, reason: impl Into<String>) {
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
        self.writers.remove(&peer);
        for s in self.streams.remove(&peer).unwrap_or_default() {
            let _ = s.shutdown(Shutdown::Both);
        }
        if let Some(c) = self.credits.get(&peer) {
            c.cv.notify_all();
        }
    }

    fn send(&self, to: usize, item: Item) {
        if let Some(w) = self.writers.get(&to) {
            let _ = w.send(item);
        }
    }

    fn control(&self, to: usize, kind: u8, attempt: u32, payload: Vec<u8>) {
        self.send(
            to,
            Item::Control {
                kind,
                attempt,
                payload,
            },
        );
    }

    fn check_deadline(&self, what: &str) -> Result<(), Error> {
        if Instant::now() >= self.deadline {
            return Err(Error::Deadline(what.to_string()));
        }
        Ok(())
    }

    /// Receives one event (or times out after `tick`), filing control frames.
    fn pump(&mut self, tick: Duration) -> Option<Event> {
        // sampled, not read per event: a burst of frames must not wait on /proc
        if self.rss_sampled.elapsed() >= Duration::from_millis(10) {
            self.peak_anon = self.peak_anon.max(anon_rss());
            self.rss_sampled = Instant::now();
        }
        let ev = match self.events.recv_timeout(tick) {
            Ok(e) => e,
            Err(RecvTimeoutError::Timeout) => return None,
            Err(RecvTimeoutError::Disconnected) => return None,
        };
        match ev {
            Event::Frame { from, frame } => {
                self.last_seen.insert(from, Instant::now());
                let in_window = frame.attempt >= self.window_base
                    && frame.attempt - self.window_base <= ATTEMPT_WINDOW;
                match frame.kind {
                    kind::SYNC | kind::DONE | kind::ABORT if !in_window => None,
                    kind::SYNC => {
                        if let Some(m) =
                            dec::<SyncMsg>(&frame.payload).filter(|m| (1..=2).contains(&m.stage))
                        {
                            self.syncs
                                .entry((frame.attempt, m.stage))
                                .or_default()
                                .insert(from, m.failed);
                        }
                        None
                    }
                    kind::DONE => {
                        if let Ok(h) = <[u8; 32]>::try_from(&frame.payload[..]) {
                            self.dones.entry(frame.attempt).or_default().insert(from, h);
                        }
                        None
                    }
                    kind::ABORT => {
                        // the attempt ends; whom the sender names is only its
                        // report: membership is decided at the next sync
                        let named: Vec<u16> = dec(&frame.payload).unwrap_or_default();
                        self.aborts.entry(frame.attempt).or_default().insert(from);
                        for f in named
                            .into_iter()
                            .map(usize::from)
                            .filter(|&f| f < self.cfg_peers.len())
                        {
                            self.reports.insert((frame.attempt, from, f));
                        }
                        None
                    }
                    kind::DATA => {
                        self.data.push_back((from, frame));
                        None
                    }
                    _ => {
                        self.fail(
                            from,
                            self.sh.attempt.load(Ordering::Relaxed),
                            "sent an unknown frame kind",
                        );
                        None
                    }
                }
            }
            other => Some(other),
        }
    }

    fn handle_lost(&mut self, ev: Event, attempt: u32) {
        if let Event::Lost { peer, why } = ev {
            self.fail(peer, attempt, why);
        }
    }

    /// Whom this peer reports as unreachable: those it lost, and what the
    /// round already decided.
    fn my_reports(&self) -> Vec<u16> {
        let mut mine: Vec<u16> = self.failed.keys().map(|&r| r as u16).collect();
        if let Some(v) = self.fault.false_report {
            mine.push(v as u16);
        }
        mine
    }

    /// Agrees with the other live members on who takes part in `attempt`.
    fn agree(&mut self, attempt: u32, candidates: &BTreeSet<usize>) -> Result<Vec<usize>, Error> {
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
        let n = self.cfg_peers.len();
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

/// Control frames for attempts beyond the current one by more than this are dropped.
const ATTEMPT_WINDOW: u32 = 2;

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
/// (`DTRAIN_REDUCE_FAULT=false-report:NAME,sync-flood:N`): report NAME as
/// unreachable at every sync; send N syncs with random attempt numbers.
#[derive(Default)]
struct Fault {
    false_report: Option<usize>,
    sync_flood: usize,
}

impl Fault {
    fn from_env(peers: &Peers) -> Self {
        let mut f = Fault::default();
        let spec = std::env::var("DTRAIN_REDUCE_FAULT").unwrap_or_default();
        for item in spec.split(',').filter(|x| !x.is_empty()) {
            match item.split_once(':') {
                Some(("false-report", name)) => f.false_report = peers.rank(name),
                Some(("sync-flood", n)) => f.sync_flood = n.parse().unwrap_or(0),
                _ => {}
            }
        }
        f
    }
}

/// A whole handshake, from the first byte to the session keys, takes at most this.
const HANDSHAKE_TIME: Duration = Duration::from_secs(5);

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

/// Longest sequence a weight may stand for, in tokens: bounds announced token counts.
const MAX_TOKENS_PER_WEIGHT: u64 = 1 << 20;

/// A peer's announced weight and tokens, checked against the peers file's
/// cap: a peer announcing more is dropped (it would otherwise dominate the
/// average, or wrap the sum of weights).
fn announced_weight_ok(weight: u64, tokens: u64, max_weight: u64) -> Result<(), String> {
    if weight > max_weight {
        return Err(format!(
            "announced weight {weight}, above the peers file's max_weight {max_weight}"
        ));
    }
    if tokens > weight.saturating_mul(MAX_TOKENS_PER_WEIGHT) {
        return Err(format!("announced {tokens} tokens for weight {weight}"));
    }
    Ok(())
}

/// Runs one peer's side of a round.
pub fn run(cfg: Config) -> Result<Outcome, Error> {
    let t_start = Instant::now();
    let me = cfg
        .peers
        .rank(&cfg.me)
        .ok_or_else(|| Error::NotAPeer(cfg.me.clone()))?;
    // before any connection: the others would refuse a handshake signed by another key
    let pinned = &cfg.peers.list[me].pubkey;
    if *pinned != cfg.key.public() {
        return Err(Error::WrongKey {
            name: cfg.me.clone(),
            pinned: pinned.to_hex(),
            have: cfg.key.public().to_hex(),
        });
    }
    let input = Arc::new(TensorFile::open(&cfg.input)?);
    let meta = match GradMeta::read(&input) {
        Ok(m) => m,
        // a receive-only peer (a validator) may give its own checkpoint's
        // model file: the layout is the model's, and its values are never sent
        Err(_) if cfg.weight == Some(0) => GradMeta {
            model: crate::fsio::hash_file(&cfg.input)
                .map_err(|e| Error::Io(cfg.input.display().to_string(), e))?
                .to_hex()
                .to_string(),
            sequences: 0,
            tokens: 0,
        },
        Err(e) => return Err(e.into()),
    };
    let flat = input.flat_f32()?;
    let n_elem = flat.len();
    let weight = cfg.weight.unwrap_or(meta.sequences);
    if weight > cfg.peers.max_weight {
        return Err(Error::Weight(format!(
            "this peer's weight {weight} is above the peers file's max_weight {}",
            cfg.peers.max_weight
        )));
    }
    // a receive-only peer's input is a placeholder for the layout: its values are never sent
    if weight > 0 && !cfg.allow_nonfinite && !flat.par_chunks(1 << 20).all(all_finite) {
        return Err(Error::NonFinite);
    }
    let tokens = if weight == 0 { 0 } else { meta.tokens };
    let layout = layout_digest(&input, &meta.model);
    let deadline = t_start + cfg.deadline;
    let idle = (cfg.deadline / 6).clamp(Duration::from_millis(500), Duration::from_secs(30));
    let connect_for = (cfg.deadline / 5).clamp(Duration::from_secs(1), Duration::from_secs(30));

    // the output: created at its final size now, metadata filled in at the end
    let specs = input.specs();
    let room: usize = 256
        + cfg
            .peers
            .list
            .iter()
            .map(|p| p.name.len() + 1)
            .sum::<usize>()
        + cfg.round.len();
    let mut out = TensorWriter::create_with_room(&cfg.output, &specs, &BTreeMap::new(), room)?;
    let (out_file, out_data) = out
        .data_file()
        .map_err(|e| Error::Io(cfg.output.display().to_string(), e))?;
    // its blocks reserved and pages mapped in now, while the peers connect,
    // not during the transfer
    let direct = out.reserved();
    let out_buf = {
        let s = out.flat_f32_mut();
        OutBuf {
            ptr: s.as_mut_ptr(),
            len: s.len(),
        }
    };

    let sh = Arc::new(Shared {
        input: input.clone(),
        out: out_buf,
        wire: cfg.wire,
        floor: cfg.floor,
        direct,
        attempt: AtomicU32::new(0),
        epoch: RwLock::new(()),
        rate: cfg.max_rate.map(|r| RateLimit {
            rate: r,
            state: Mutex::new((0.0, Instant::now())),
        }),
        stop: AtomicBool::new(false),
        sent: Mutex::new(HashMap::new()),
        out_file,
        out_data,
        pool: Mutex::new(Vec::new()),
    });
    let key = Arc::new(cfg.key);
    let peers = Arc::new(cfg.peers.clone());
    let round = Arc::new(cfg.round.clone());
    let (etx, erx) = channel::<Event>();

    // listen, accept and authenticate incoming connections
    let addr = peers.list[me].addr.clone();
    let listener = TcpListener::bind(&addr).map_err(|e| Error::Listen {
        addr: addr.clone(),
        why: e.to_string(),
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::Io(addr.clone(), e))?;
    {
        let (peers, key, round, etx, sh) = (
            peers.clone(),
            key.clone(),
            round.clone(),
            etx.clone(),
            sh.clone(),
        );
        let gate = Arc::new(Gate::new(&peers));
        std::thread::spawn(move || {
            while !sh.stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, from)) => {
                        // bounded: strangers are turned away at once, and no
                        // address can hold more than its share of slots
                        let Some(slot) = gate.admit(from.ip()) else {
                            continue;
                        };
                        let (peers, key, round, etx) =
                            (peers.clone(), key.clone(), round.clone(), etx.clone());
                        std::thread::spawn(move || {
                            let _ = s.set_nonblocking(false);
                            let local = Local {
                                round: &round,
                                me,
                                key: &key,
                                peers: &peers,
                                weight,
                                tokens,
                                layout,
                            };
                            let within = HANDSHAKE_TIME.min(connect_for);
                            let done = handshake::accept(&mut Deadline::new(&s, within), &local);
                            drop(slot);
                            if let Ok(sess) = done {
                                let _ = s.set_read_timeout(None);
                                let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
                                let _ = etx.send(Event::Incoming(sess, s));
                            }
                        });
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
    }
    // dial every other peer until the connect window closes
    for j in (0..peers.len()).filter(|&j| j != me) {
        let (peers, key, round, etx) = (peers.clone(), key.clone(), round.clone(), etx.clone());
        let until = t_start + connect_for;
        std::thread::spawn(move || {
            let mut delay = Duration::from_millis(20);
            let mut last = String::from("no attempt");
            while Instant::now() < until {
                let addrs: Vec<_> = match peers.list[j].addr.to_socket_addrs() {
                    Ok(a) => a.collect(),
                    Err(e) => {
                        last = format!("cannot resolve {}: {e}", peers.list[j].addr);
                        Vec::new()
                    }
                };
                for a in addrs {
                    match TcpStream::connect_timeout(&a, Duration::from_secs(2)) {
                        Ok(s) => {
                            let _ = s.set_nodelay(true);
                            let local = Local {
                                round: &round,
                                me,
                                key: &key,
                                peers: &peers,
                                weight,
                                tokens,
                                layout,
                            };
                            let mut io = Deadline::new(&s, HANDSHAKE_TIME);
                            match handshake::initiate(&mut io, &local, j) {
                                Ok(sess) => {
                                    tracing::debug!("connected to {}", peers.list[j].name);
                                    let _ = s.set_read_timeout(None);
                                    let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
                                    let _ = etx.send(Event::Outgoing(sess, s));
                                    return;
                                }
                                Err(e) => last = e.to_string(),
                            }
                        }
                        Err(e) => last = format!("cannot connect to {}: {e}", peers.list[j].addr),
                    }
                }
                tracing::debug!(
                    "dialing {}: {last}; again in {} ms",
                    peers.list[j].name,
                    delay.as_millis()
                );
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(500));
            }
            tracing::debug!("gave up dialing {}: {last}", peers.list[j].name);
            let _ = etx.send(Event::NoConnection(j, last));
        });
    }

    let mut co = Coordinator {
        cfg_peers: (*peers).clone(),
        me,
        sh: sh.clone(),
        events: erx,
        writers: HashMap::new(),
        credits: HashMap::new(),
        counters: HashMap::new(),
        streams: HashMap::new(),
        reports: BTreeSet::new(),
        window_base: 0,
        fault: Fault::from_env(&peers),
        weights: HashMap::from([(me, (weight, tokens))]),
        failed: BTreeMap::new(),
        deadline,
        idle,
        last_seen: HashMap::new(),
        syncs: HashMap::new(),
        dones: HashMap::new(),
        aborts: HashMap::new(),
        data: VecDeque::new(),
        peak_anon: 0,
        rss_sampled: Instant::now(),
        wire: cfg.wire,
        chunk: cfg.chunk.max(wire::Q8_BLOCK) / wire::Q8_BLOCK * wire::Q8_BLOCK,
        allow_nonfinite: cfg.allow_nonfinite,
        clip: cfg.clip,
        connect_until: t_start + connect_for + Duration::from_secs(5),
    };

    // connection phase: both directions with every peer, or a recorded failure
    let mut outgoing: HashMap<usize, (Session, TcpStream)> = HashMap::new();
    let mut incoming: HashMap<usize, (Session, TcpStream)> = HashMap::new();
    let mut dial_failed: BTreeSet<usize> = BTreeSet::new();
    let others: Vec<usize> = (0..peers.len()).filter(|&j| j != me).collect();
    let connect_until = co.connect_until;
    loop {
        let done = others.iter().all(|j| {
            dial_failed.contains(j) || (outgoing.contains_key(j) && incoming.contains_key(j))
        });
        if done || Instant::now() >= connect_until {
            break;
        }
        match co.events.recv_timeout(Duration::from_millis(20)) {
            Ok(Event::Outgoing(s, st)) => {
                outgoing.insert(s.peer, (s, st));
            }
            Ok(Event::Incoming(s, st)) => {
                incoming.insert(s.peer, (s, st));
            }
            Ok(Event::NoConnection(j, why)) => {
                dial_failed.insert(j);
                co.fail(j, 0, why);
            }
            _ => {}
        }
    }
    let seconds_connect = t_start.elapsed().as_secs_f64();
    let (same, other): (Vec<usize>, Vec<usize>) = others
        .iter()
        .copied()
        .filter(|j| outgoing.contains_key(j) && incoming.contains_key(j))
        .partition(|j| outgoing[j].0.layout == layout && incoming[j].0.layout == layout);
    // my group (the same layout, me included) is no larger than the others': I am the odd one
    if !other.is_empty() && same.len() < other.len() {
        let names: Vec<String> = other.iter().map(|&j| peers.list[j].name.clone()).collect();
        return Err(Error::Layout(names.join(", ")));
    }
    for &j in &others {
        if co.failed.contains_key(&j) {
            continue;
        }
        match (outgoing.remove(&j), incoming.remove(&j)) {
            (Some((so, sto)), Some((si, sti))) => {
                if so.layout != layout || si.layout != layout {
                    co.fail(j, 0, "its gradient has another tensor layout or model");
                    continue;
                }
                if let Err(why) = announced_weight_ok(si.weight, si.tokens, peers.max_weight) {
                    co.fail(j, 0, why);
                    continue;
                }
                co.weights.insert(j, (si.weight, si.tokens));
                let c = Arc::new(Counters::default());
                let cr = Arc::new(Credits {
                    used: Mutex::new(0),
                    cv: Condvar::new(),
                });
                let _ = sto.set_write_timeout(Some(idle));
                for st in [&sto, &sti] {
                    let _ = st.set_nodelay(true);
                }
                let (wtx, wrx) = channel::<Item>();
                {
                    let (sh, c, etx) = (sh.clone(), c.clone(), etx.clone());
                    let s = BufWriter::with_capacity(
                        1 << 20,
                        sto.try_clone().map_err(|e| Error::Io("socket".into(), e))?,
                    );
                    let mut k = so.send;
                    if cfg.floor {
                        k.set_insecure();
                    }
                    std::thread::spawn(move || writer_loop(s, k, wrx, sh, c, j, etx));
                }
                {
                    let (sh, c, etx, cr) = (sh.clone(), c.clone(), etx.clone(), cr.clone());
                    let s = sti.try_clone().map_err(|e| Error::Io("socket".into(), e))?;
                    let mut k = si.recv;
                    if cfg.floor {
                        k.set_insecure();
                    }
                    std::thread::spawn(move || reader_loop(s, k, sh, c, cr, j, etx));
                }
                co.streams.insert(j, vec![sto, sti]);
                co.writers.insert(j, wtx);
                co.credits.insert(j, cr);
                co.counters.insert(j, c);
                co.last_seen.insert(j, Instant::now());
            }
            (o, i) => {
                let why = match (o.is_some(), i.is_some()) {
                    (true, false) => "never connected to this peer",
                    (false, true) => "did not accept this peer's connection",
                    _ => "no connection either way",
                };
                co.fail(j, 0, why);
            }
        }
    }
    drop(etx);

    let min_peers = cfg.min_peers.unwrap_or(peers.len() / 2 + 1).max(1);
    let result = co.rounds(n_elem, min_peers);
    sh.stop.store(true, Ordering::Relaxed);
    for s in co.streams.values().flatten() {
        let _ = s.shutdown(Shutdown::Both);
    }
    let (
        attempt,
        members,
        plan,
        contribs,
        sum_w,
        tokens_total,
        confirmed,
        seconds_reduce,
        result_hash,
    ) = result?;

    // output metadata and transcript
    let contributors: Vec<usize> = members
        .iter()
        .copied()
        .filter(|r| co.weights.get(r).is_some_and(|w| w.0 > 0))
        .collect();
    let mut out_meta = BTreeMap::new();
    GradMeta {
        model: meta.model.clone(),
        sequences: sum_w,
        tokens: tokens_total,
    }
    .insert_into(&mut out_meta);
    out_meta.insert(
        "contributors".into(),
        contributors
            .iter()
            .map(|&r| co.name(r))
            .collect::<Vec<_>>()
            .join(","),
    );
    out_meta.insert("round".into(), cfg.round.clone());
    out_meta.insert("wire".into(), cfg.wire.name().into());
    out.rewrite_metadata(&out_meta)?;
    let data_hash = blake3::Hash::from(result_hash).to_hex().to_string();
    // the average can be recomputed by another round: renamed into place, not fsynced
    {
        let _g = sh.epoch.write().unwrap();
        out.commit_no_sync()?;
    }

    let spans = plan
        .owners
        .iter()
        .zip(&plan.spans)
        .map(|(&o, &(start, len))| SpanRecord {
            owner: co.name(o),
            start,
            len,
            contributors: contributors
                .iter()
                .map(|&c| Contribution {
                    peer: co.name(c),
                    weight: co.weights[&c].0,
                    blake3: contribs.get(&(o, c)).map(|h| h.to_string()),
                })
                .collect(),
        })
        .collect();
    let traffic = others
        .iter()
        .map(|&j| {
            let c = co.counters.get(&j);
            Traffic {
                peer: co.name(j),
                sent: c.map_or(0, |c| c.sent.load(Ordering::Relaxed)),
                received: c.map_or(0, |c| c.received.load(Ordering::Relaxed)),
                send_seconds: c.map_or(0.0, |c| Counters::span(&c.first_send, &c.last_send)),
                recv_seconds: c.map_or(0.0, |c| Counters::span(&c.first_recv, &c.last_recv)),
            }
        })
        .collect();
    let body = Body {
        version: 1,
        round: cfg.round.clone(),
        me: cfg.me.clone(),
        wire: cfg.wire.name().into(),
        chunk: co.chunk,
        elements: n_elem,
        bytes: (n_elem * 4) as u64,
        peers: (0..peers.len())
            .map(|r| PeerEntry {
                name: co.name(r),
                rank: r,
                weight: co.weights.get(&r).map(|w| w.0),
            })
            .collect(),
        attempts: attempt + 1,
        members: members.iter().map(|&r| co.name(r)).collect(),
        spans,
        traffic,
        failures: co.failed.values().cloned().collect(),
        reports: co
            .reports
            .iter()
            .map(|&(attempt, by, about)| transcript::Report {
                attempt,
                by: co.name(by),
                about: co.name(about),
            })
            .collect(),
        sum_weight: sum_w,
        tokens: tokens_total,
        result: data_hash,
        confirmed_by: confirmed.iter().map(|&r| co.name(r)).collect(),
        seconds_connect,
        seconds_reduce,
        seconds_total: t_start.elapsed().as_secs_f64(),
        peak_anon_rss_bytes: co.peak_anon.max(anon_rss()),
    };
    Ok(Outcome {
        transcript: Transcript::sign(body, &key),
    })
}

/// attempt, members, plan, contribution hashes, Σw, Σtokens, confirmers, seconds, result hash
type RoundResult = (
    u32,
    Vec<usize>,
    Plan,
    HashMap<(usize, usize), String>,
    u64,
    u64,
    Vec<usize>,
    f64,
    [u8; 32],
);

/// plan, contribution hashes, Σw, Σtokens, result hash
/// "1 peer", "3 peers".
fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

type AttemptResult = (Plan, HashMap<(usize, usize), String>, u64, u64, [u8; 32]);

impl Coordinator {
    /// Attempts until one completes and is confirmed.
    fn rounds(&mut self, n_elem: usize, min_peers: usize) -> Result<RoundResult, Error> {
        let mut candidates: BTreeSet<usize> = (0..self.cfg_peers.len()).collect();
        let mut attempt: u32 = 0;
        loop {
            self.check_deadline("starting an attempt")?;
            let members = self.agree(attempt, &candidates)?;
            tracing::info!(
                me = %self.name(self.me),
                "attempt {attempt}: members {}",
                members.iter().map(|&r| self.name(r)).collect::<Vec<_>>().join(" ")
            );
            if members.len() < min_peers {
                let failed: String = self
                    .failed
                    .iter()
                    .map(|(&r, f)| format!("; {}: {}", self.name(r), f.reason))
                    .collect();
                return Err(Error::TooFew {
                    members: members.len(),
                    min: min_peers,
                    failed,
                });
            }
            candidates = members.iter().copied().collect();
            // take the output for this attempt: writers of older attempts finish first
            self.sh.attempt.store(attempt, Ordering::Release);
            drop(self.sh.epoch.write().unwrap());
            let t0 = Instant::now();
            match self.attempt(attempt, &members, n_elem) {
                Ok((plan, contribs, sum_w, tokens, result)) => {
                    match self.confirm(attempt, &members, result)? {
                        Some(confirmed) => {
                            return Ok((
                                attempt,
                                members,
                                plan,
                                contribs,
                                sum_w,
                                tokens,
                                confirmed,
                                t0.elapsed().as_secs_f64(),
                                result,
                            ));
                        }
                        None => {
                            attempt += 1;
                        }
                    }
                }
                Err(Stop::Abort) => {
                    attempt += 1;
                }
                Err(Stop::NoContributors) => return Err(Error::NoContributors),
                Err(Stop::Io(e)) => {
                    return Err(Error::Io(
                        "writing the output".into(),
                        std::io::Error::other(e),
                    ))
                }
            }
        }
    }

    /// Tells everyone attempt `a` is aborted and why.
    fn abort(&mut self, a: u32, members: &[usize]) -> Stop {
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
    fn drain_writers(&self, limit: Duration) {
        let (tx, rx) = channel();
        let n = self
            .writers
            .values()
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

    fn release(&self, from: usize) {
        if let Some(c) = self.credits.get(&from) {
            c.release();
        }
    }

    /// One attempt with a fixed member set. Returns the plan, contribution
    /// hashes, Σw and Σtokens when this peer holds the whole result.
    #[allow(clippy::type_complexity)]
    fn attempt(&mut self, a: u32, members: &[usize], n_elem: usize) -> Result<AttemptResult, Stop> {
        let plan = Plan::new(members, &self.cfg_peers, n_elem);
        let contributors: Vec<usize> = members
            .iter()
            .copied()
            .filter(|r| self.weights.get(r).is_some_and(|w| w.0 > 0))
            .collect();
        // announced weights are capped (see `announced_weight_ok`), so these cannot wrap
        let sum_w = contributors
            .iter()
            .fold(0u64, |a, r| a.saturating_add(self.weights[r].0));
        let tokens = contributors
            .iter()
            .fold(0u64, |a, r| a.saturating_add(self.weights[r].1));
        if sum_w == 0 {
            // every member sees the same weights: all stop the same way
            return Err(Stop::NoContributors);
        }
        let chunk = self.chunk;
        let chunks_of = |len: usize| len.div_ceil(chunk);
        let i_contribute = self.weights[&self.me].0 > 0;
        // phase 1: my contributions to every other owner, chunk by chunk
        if i_contribute {
            for (&o, &(start, len)) in plan.owners.iter().zip(&plan.spans) {
                if o == self.me {
                    continue;
                }
                for c in 0..chunks_of(len) {
                    let s = start + c * chunk;
                    self.send(
                        o,
                        Item::Phase1 {
                            attempt: a,
                            owner: o,
                            chunk: c,
                            start: s,
                            len: chunk.min(start + len - s),
                        },
                    );
                }
            }
        }
        let (my_start, my_len) = plan.span_of(self.me).expect("I am a member");
        let my_chunks = chunks_of(my_len);
        let mut next_chunk = 0usize;
        let mut pending: HashMap<usize, VecDeque<(usize, Vec<u8>, [u8; 32])>> = contributors
            .iter()
            .filter(|&&r| r != self.me)
            .map(|&r| (r, VecDeque::new()))
            .collect();
        // the contribution hash: blake3 of the chunk payload hashes, in chunk order
        let mut contrib_hash: HashMap<usize, blake3::Hasher> = pending
            .keys()
            .map(|&r| (r, blake3::Hasher::new()))
            .collect();
        // phase 2 bookkeeping: chunks still missing per owner
        let mut missing: HashMap<usize, usize> = plan
            .owners
            .iter()
            .zip(&plan.spans)
            .filter(|(&o, _)| o != self.me)
            .map(|(&o, &(_, len))| (o, chunks_of(len)))
            .collect();
        let mut got_chunk: HashMap<(usize, usize), bool> = HashMap::new();
        // (owner, chunk) → blake3 of that result chunk's phase-2 payload
        let mut result_hashes: BTreeMap<(usize, usize), [u8; 32]> = BTreeMap::new();
        let mut acc = vec![0f64; if self.clip.is_some() { chunk } else { 0 }];
        let mut result = vec![0f32; chunk];
        let mut tmp: Vec<f32> = Vec::new();
        let mut scratch: Vec<Vec<f32>> = vec![Vec::new(); contributors.len()];
        let mut encoded: Vec<u8> = Vec::new();
        let mut last_progress = Instant::now();
        // bars (a terminal only): the contributions to my span, then the others' results
        let span_bytes = |len: usize| -> u64 {
            (0..chunks_of(len))
                .map(|c| self.wire.encoded_len(chunk.min(len - c * chunk)) as u64)
                .sum()
        };
        let phase1 = crate::progress::bytes_bar(
            pending.len() as u64 * span_bytes(my_len),
            &format!("phase 1: from {}", count(pending.len(), "peer")),
        );
        let phase2 = crate::progress::bytes_bar(
            plan.owners
                .iter()
                .zip(&plan.spans)
                .filter(|(&o, _)| o != self.me)
                .map(|(_, &(_, len))| span_bytes(len))
                .sum(),
            &format!("phase 2: from {}", count(missing.len(), "owner")),
        );

        loop {
            if Instant::now() >= self.deadline {
                tracing::warn!(me = %self.name(self.me), "attempt {a}: the deadline passed");
                let _ = self.abort(a, members);
                return Err(Stop::Abort);
            }
            // an abort from anyone ends this attempt
            if let Some(from) = self.aborts.get(&a).and_then(|s| s.iter().next().copied()) {
                tracing::info!(me = %self.name(self.me), "{} aborted attempt {a}", self.name(from));
                return Err(self.abort(a, members));
            }
            if let Some(r) = members.iter().find(|r| self.failed.contains_key(r)) {
                tracing::info!(me = %self.name(self.me), "attempt {a}: member {} has failed", self.name(*r));
                return Err(self.abort(a, members));
            }
            // reduce every chunk of my span whose contributions are all here
            while next_chunk < my_chunks && pending.values().all(|q| !q.is_empty()) {
                let s = my_start + next_chunk * chunk;
                let l = chunk.min(my_start + my_len - s);
                // take this chunk's frame from every remote contributor
                let mut frames: Vec<(usize, Vec<u8>)> = Vec::with_capacity(contributors.len());
                let mut bad: Option<(usize, String)> = None;
                for &r in contributors.iter().filter(|&&r| r != self.me) {
                    let (c, payload, hash) = pending.get_mut(&r).unwrap().pop_front().unwrap();
                    self.release(r);
                    if c != next_chunk && bad.is_none() {
                        bad = Some((r, format!("sent chunk {c} where {next_chunk} was due")));
                    }
                    contrib_hash.get_mut(&r).unwrap().update(&hash);
                    frames.push((r, payload));
                }
                // their sizes (finiteness is checked on the result below)
                if bad.is_none() && !self.sh.floor {
                    let want = self.wire.encoded_len(l);
                    if let Some((r, p)) = frames.iter().find(|(_, p)| p.len() - DATA_HDR != want) {
                        let got = p.len() - DATA_HDR;
                        bad = Some((*r, format!("malformed chunk: {got} bytes for {l} values")));
                    }
                }
                if let Some((r, why)) = bad {
                    for (_, p) in frames {
                        self.sh.recycle(p);
                    }
                    self.fail(r, a, why);
                    return Err(self.abort(a, members));
                }
                // straight into the output where it is mapped in (see Shared::direct)
                let out = self.sh.out;
                let res: &mut [f32] = if self.sh.direct && !self.sh.floor {
                    // SAFETY: my span's chunk, enqueued to writers only below
                    unsafe { out.region_mut(s, l) }
                } else {
                    &mut result[..l]
                };
                if self.sh.floor {
                    res.copy_from_slice(&self.sh.input.flat_f32().expect("checked")[s..s + l]);
                } else {
                    let input = self.sh.input.clone();
                    let mine = &input.flat_f32().expect("checked")[s..s + l];
                    // the contributions as they arrived (f32 in place, bf16 and q8
                    // decoded inside the sum); centered clipping wants them as f32
                    let mut views: Vec<(u64, Values)> = Vec::with_capacity(contributors.len());
                    let mut remote = frames.iter().zip(scratch.iter_mut());
                    for &r in &contributors {
                        let w = self.weights[&r].0;
                        if r == self.me {
                            views.push((w, Values::F32(mine)));
                        } else {
                            let ((_, payload), sc) = remote.next().unwrap();
                            let body = &payload[DATA_HDR..];
                            views
                                .push((w, Values::of(self.wire, body, l, sc, self.clip.is_some())));
                        }
                    }
                    let finite = match self.clip {
                        Some(tau) => {
                            let f32_views: Vec<(u64, &[f32])> = views
                                .iter()
                                .map(|(w, v)| match v {
                                    Values::F32(x) => (*w, *x),
                                    _ => unreachable!("decoded for clipping"),
                                })
                                .collect();
                            let acc = &mut acc[..l];
                            centered_clip(&f32_views, tau, acc);
                            res.iter_mut()
                                .zip(acc.iter())
                                .for_each(|(o, &x)| *o = x as f32);
                            all_finite(res)
                        }
                        None => weighted_mean_of(&views, sum_w, res),
                    };
                    // a NaN or Inf in any contribution makes the mean non-finite: only
                    // then look for who sent it
                    if !self.allow_nonfinite && !finite {
                        let culprit = contributors
                            .iter()
                            .zip(&views)
                            .find(|(_, (_, v))| !v.all_finite())
                            .map(|(&r, _)| r);
                        drop(views);
                        for (_, p) in frames {
                            self.sh.recycle(p);
                        }
                        match culprit {
                            Some(r) if r != self.me => {
                                self.fail(r, a, "its contribution contains NaN or Inf");
                                return Err(self.abort(a, members));
                            }
                            _ => return Err(Stop::Io("the average is not finite".into())),
                        }
                    }
                    // the result as every receiver will decode it
                    self.wire.round_trip(res);
                    // writers read it from the mapping
                    if let Err(e) = self.sh.store(s, res) {
                        tracing::error!(me = %self.name(self.me), "writing the output failed: {e}");
                        return Err(Stop::Io(e.to_string()));
                    }
                }
                for (_, p) in frames {
                    self.sh.recycle(p);
                }
                // the chunk's identity: blake3 of the phase-2 payload every member receives
                let phase2_hash = if self.sh.floor {
                    [0u8; 32]
                } else {
                    chunk_hash(2, self.me, next_chunk, res, self.wire, &mut encoded)
                };
                result_hashes.insert((self.me, next_chunk), phase2_hash);
                for &r in members.iter().filter(|&&r| r != self.me) {
                    self.send(
                        r,
                        Item::Phase2 {
                            attempt: a,
                            owner: self.me,
                            chunk: next_chunk,
                            start: s,
                            len: l,
                            hash: phase2_hash,
                        },
                    );
                }
                next_chunk += 1;
                last_progress = Instant::now();
            }
            if next_chunk == my_chunks && missing.values().all(|&m| m == 0) {
                // (owner, contributor) → contribution hash, for my span and my contributions
                let mut hashes: HashMap<(usize, usize), String> = HashMap::new();
                for (r, h) in contrib_hash {
                    hashes.insert((self.me, r), h.finalize().to_hex().to_string());
                }
                let mut sent = self.sh.sent.lock().unwrap();
                for &o in plan
                    .owners
                    .iter()
                    .filter(|&&o| o != self.me && i_contribute)
                {
                    let mut list = sent.remove(&(a, o)).unwrap_or_default();
                    list.sort_by_key(|x| x.0);
                    let mut h = blake3::Hasher::new();
                    list.iter().for_each(|(_, x)| {
                        h.update(x);
                    });
                    hashes.insert((o, self.me), h.finalize().to_hex().to_string());
                }
                // the result's identity: blake3 of every result chunk's hash, in vector order
                let mut rh = blake3::Hasher::new();
                for h in result_hashes.values() {
                    rh.update(h);
                }
                return Ok((plan, hashes, sum_w, tokens, *rh.finalize().as_bytes()));
            }
            // take buffered data frames
            while let Some((from, frame)) = self.data.pop_front() {
                if frame.attempt != a {
                    self.release(from);
                    continue;
                }
                if frame.payload.len() < DATA_HDR {
                    self.release(from);
                    self.fail(from, a, "malformed data frame");
                    break;
                }
                let phase = frame.payload[0];
                let owner = u16::from_le_bytes([frame.payload[2], frame.payload[3]]) as usize;
                let c = u32::from_le_bytes(frame.payload[4..8].try_into().unwrap()) as usize;
                match phase {
                    1 if owner == self.me && pending.contains_key(&from) => {
                        // the credit is released when the chunk is consumed
                        phase1.inc(frame.payload.len().saturating_sub(DATA_HDR) as u64);
                        pending
                            .get_mut(&from)
                            .unwrap()
                            .push_back((c, frame.payload, frame.hash));
                    }
                    2 if owner == from && missing.contains_key(&from) => {
                        self.release(from);
                        let Some(&(start, len)) = plan.span_of(from).as_ref() else {
                            continue;
                        };
                        phase2.inc(frame.payload.len().saturating_sub(DATA_HDR) as u64);
                        if c >= chunks_of(len) || got_chunk.contains_key(&(from, c)) {
                            self.fail(
                                from,
                                a,
                                format!("sent result chunk {c} twice or out of range"),
                            );
                            break;
                        }
                        let s = start + c * chunk;
                        let l = chunk.min(start + len - s);
                        if !self.sh.floor {
                            let body = &frame.payload[DATA_HDR..];
                            let out = self.sh.out;
                            // decoded straight into the output where it is mapped in
                            let vals: &mut [f32] = if self.sh.direct {
                                // SAFETY: another owner's span: no writer of mine reads it
                                unsafe { out.region_mut(s, l) }
                            } else {
                                tmp.resize(l, 0.0);
                                &mut tmp[..l]
                            };
                            let finite = match self.wire.decode_checked(body, vals) {
                                Ok(f) => f,
                                Err(e) => {
                                    self.fail(from, a, format!("malformed result chunk: {e}"));
                                    break;
                                }
                            };
                            if !self.allow_nonfinite && !finite {
                                self.fail(from, a, "its averaged span contains NaN or Inf");
                                break;
                            }
                            if let Err(e) = self.sh.store(s, vals) {
                                return Err(Stop::Io(e.to_string()));
                            }
                        }
                        result_hashes.insert((from, c), frame.hash);
                        self.sh.recycle(frame.payload);
                        got_chunk.insert((from, c), true);
                        *missing.get_mut(&from).unwrap() -= 1;
                        last_progress = Instant::now();
                    }
                    _ => {
                        self.release(from);
                        self.fail(from, a, format!("sent an unexpected data frame (phase {phase}, span of rank {owner})"));
                        break;
                    }
                }
            }
            if members.iter().any(|r| self.failed.contains_key(r)) {
                continue;
            }
            // silence: who are we waiting for, and for how long?
            let now = Instant::now();
            let me = self.me;
            for &r in members.iter().filter(|&&r| r != me) {
                let seen = self.last_seen.get(&r).copied().unwrap_or(now);
                let waiting_contrib =
                    next_chunk < my_chunks && pending.get(&r).is_some_and(|q| q.is_empty());
                let waiting_result = missing.get(&r).is_some_and(|&m| m > 0);
                let limit = if waiting_contrib {
                    self.idle
                } else {
                    self.idle * 2
                };
                if (waiting_contrib || waiting_result)
                    && now.duration_since(seen) > limit
                    && now.duration_since(last_progress) > limit
                {
                    self.fail(
                        r,
                        a,
                        format!("silent for {:.1}s", now.duration_since(seen).as_secs_f64()),
                    );
                }
            }
            if let Some(ev) = self.pump(Duration::from_millis(5)) {
                self.handle_lost(ev, a);
            }
        }
    }

    /// Exchanges result hashes. `Some(confirmers)` when every live member agrees;
    /// `None` when the attempt was aborted meanwhile.
    fn confirm(
        &mut self,
        a: u32,
        members: &[usize],
        mine: [u8; 32],
    ) -> Result<Option<Vec<usize>>, Error> {
        for &r in members
            .iter()
            .filter(|&&r| r != self.me && !self.failed.contains_key(&r))
        {
            self.control(r, kind::DONE, a, mine.to_vec());
        }
        let mut confirmed = vec![self.me];
        let started = Instant::now();
        loop {
            self.check_deadline("waiting for the others to confirm the result")?;
            if self.aborts.get(&a).is_some_and(|s| !s.is_empty()) {
                let _ = self.abort(a, members);
                return Ok(None);
            }
            let dones = self.dones.get(&a).cloned().unwrap_or_default();
            for (&r, h) in &dones {
                if h != &mine {
                    return Err(Error::Mismatch(format!(
                        "{} holds a different result",
                        self.name(r)
                    )));
                }
            }
            let waiting: Vec<usize> = members
                .iter()
                .copied()
                .filter(|&r| {
                    r != self.me && !self.failed.contains_key(&r) && !dones.contains_key(&r)
                })
                .collect();
            if waiting.is_empty() {
                confirmed.extend(members.iter().copied().filter(|r| dones.contains_key(r)));
                confirmed.sort();
                self.drain_writers(Duration::from_secs(2));
                return Ok(Some(confirmed));
            }
            if started.elapsed() > self.idle * 3 {
                for r in waiting {
                    self.fail(r, a, "left before confirming the result");
                }
                continue;
            }
            // data frames of this attempt may still trickle in: release their credits
            while let Some((from, _)) = self.data.pop_front() {
                self.release(from);
            }
            if let Some(ev) = self.pump(Duration::from_millis(5)) {
                // a peer that confirmed and then closed its connections has finished
                let finished = matches!(&ev, Event::Lost { peer, .. } if self.dones.get(&a).is_some_and(|d| d.contains_key(peer)));
                if !finished {
                    self.handle_lost(ev, a);
                }
            }
        }
    }
}

/// blake3 of a data frame's payload: its header (`phase`, `owner`, chunk
/// `c`), then `values` in the wire format (f32 hashed in place; bf16 and q8
/// encoded into `buf`).
fn chunk_hash(
    phase: u8,
    owner: usize,
    c: usize,
    values: &[f32],
    wire: Wire,
    buf: &mut Vec<u8>,
) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(&data_header(phase, owner, c));
    h.update(match wire {
        Wire::F32 => wire::f32_bytes(values),
        w => w.encode_to(values, buf),
    });
    *h.finalize().as_bytes()
}

/// The result hash a round's transcript records for an averaged vector: blake3
/// over the blake3 of each result chunk's phase-2 payload (`[2, owner rank
/// u16, chunk u32]` then the chunk in the wire format), spans in plan order,
/// chunks in order. Lets anyone check an output file against a transcript.
pub fn result_hash(values: &[f32], plan: &Plan, chunk: usize, wire: Wire) -> [u8; 32] {
    let mut top = blake3::Hasher::new();
    let mut buf = Vec::new();
    for (&owner, &(start, len)) in plan.owners.iter().zip(&plan.spans) {
        for (c, s) in (start..start + len).step_by(chunk.max(1)).enumerate() {
            let part = &values[s..(s + chunk).min(start + len)];
            top.update(&chunk_hash(2, owner, c, part, wire, &mut buf));
        }
    }
    *top.finalize().as_bytes()
}

/// The hash an owner records for one peer's contribution to its span: blake3
/// over the blake3 of each phase-1 payload (`[1, 0, owner rank u16, chunk
/// u32]` then the chunk in the wire format), in chunk order. A validator holding
/// the miner's gradient file recomputes it to see whether the miner sent its
/// gradient or something else.
pub fn contribution_hash(
    values: &[f32],
    owner: usize,
    start: usize,
    len: usize,
    chunk: usize,
    wire: Wire,
) -> [u8; 32] {
    let mut top = blake3::Hasher::new();
    let mut buf = Vec::new();
    for (c, s) in (start..start + len).step_by(chunk.max(1)).enumerate() {
        let part = &values[s..(s + chunk).min(start + len)];
        top.update(&chunk_hash(1, owner, c, part, wire, &mut buf));
    }
    *top.finalize().as_bytes()
}

/// Centered clipping (Karimireddy et al., 2021) of weighted contributions,
/// starting from the coordinate-wise weighted median and iterating three times:
/// v ← v + Σ wᵢ·clip(gᵢ − v) / Σ wᵢ, clip scaling a difference down to an RMS
/// of at most `tau` per element. Writes the aggregate (a mean, not a sum) to `out`.
pub fn centered_clip(contribs: &[(u64, &[f32])], tau: f64, out: &mut [f64]) {
    let n = out.len();
    let sum_w: f64 = contribs.iter().map(|(w, _)| *w as f64).sum();
    // weighted coordinate-wise median
    let mut col: Vec<(f32, u64)> = Vec::with_capacity(contribs.len());
    for (k, o) in out.iter_mut().enumerate() {
        col.clear();
        col.extend(contribs.iter().map(|(w, v)| (v[k], *w)));
        col.sort_by(|a, b| a.0.total_cmp(&b.0));
        let half = sum_w / 2.0;
        let mut acc = 0.0;
        *o = col.last().map_or(0.0, |c| c.0 as f64);
        for (v, w) in &col {
            acc += *w as f64;
            if acc >= half {
                *o = *v as f64;
                break;
            }
        }
    }
    let limit = tau * (n as f64).sqrt();
    let mut step = vec![0f64; n];
    for _ in 0..3 {
        step.iter_mut().for_each(|s| *s = 0.0);
        for (w, v) in contribs {
            let norm = v
                .iter()
                .zip(out.iter())
                .map(|(&g, &c)| (g as f64 - c).powi(2))
                .sum::<f64>()
                .sqrt();
            let scale = if norm > limit { limit / norm } else { 1.0 };
            let f = *w as f64 * scale / sum_w;
            step.iter_mut()
                .zip(v.iter().zip(out.iter()))
                .for_each(|(s, (&g, &c))| *s += f * (g as f64 - c));
        }
        out.iter_mut().zip(&step).for_each(|(o, s)| *o += s);
    }
}

#[cfg(test)]
mod membership_tests {
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
