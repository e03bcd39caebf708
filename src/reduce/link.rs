//! One authenticated link per peer: a writer thread that sends what the
//! coordinator queues, a reader thread that hands it received frames, and
//! what they share (the input, the output, frame buffers, credits, counters).
//!
//! Why threads and credits: the coordinator must never block on a socket (it
//! reduces chunks while others are in flight), so every peer's two directions
//! have their own thread. A reader holds at most [`CREDITS`] unconsumed data
//! frames per sender, so memory stays a few chunks per peer whatever the
//! vector's size.

use std::io::{BufReader, BufWriter, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use super::chunks::{data_header, DATA_HDR};
use super::handshake::Session;
use super::membership::ATTEMPT_WINDOW;
use super::wire::{self, kind, MacKey, Wire};
use super::{Error, CREDITS};
use crate::tensors::TensorFile;

/// The output's f32 data region: writers read this peer's span from it. The
/// coordinator writes a region (with pwrite) before it enqueues
/// frames that read it and never rewrites it in the same attempt; a new attempt
/// takes the attempt fence for writing, which waits for writers still sending
/// the previous attempt's data.
#[derive(Clone, Copy)]
pub(super) struct OutBuf {
    pub ptr: *mut f32,
    pub len: usize,
}
// SAFETY: see the type's comment: disjoint regions, ordered by the attempt fence.
unsafe impl Send for OutBuf {}
unsafe impl Sync for OutBuf {}

impl OutBuf {
    /// SAFETY: no one may be writing the region.
    pub unsafe fn region(&self, start: usize, len: usize) -> &[f32] {
        assert!(start + len <= self.len);
        std::slice::from_raw_parts(self.ptr.add(start), len)
    }

    /// SAFETY: only the coordinator writes, and no writer reads the region
    /// until the coordinator enqueues it (or a new attempt took the fence).
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn region_mut(&self, start: usize, len: usize) -> &mut [f32] {
        assert!(start + len <= self.len);
        std::slice::from_raw_parts_mut(self.ptr.add(start), len)
    }
}

/// Egress token bucket shared by all writers.
pub(super) struct RateLimit {
    rate: f64,
    bucket: Mutex<Bucket>,
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    /// A limit of `rate` bytes per second.
    pub fn new(rate: f64) -> Self {
        RateLimit {
            rate,
            bucket: Mutex::new(Bucket {
                tokens: 0.0,
                last: Instant::now(),
            }),
        }
    }

    fn take(&self, bytes: u64) {
        let mut b = self.bucket.lock().unwrap();
        let now = Instant::now();
        let refill = now.duration_since(b.last).as_secs_f64() * self.rate;
        b.tokens = (b.tokens + refill).min(self.rate * 0.05);
        b.last = now;
        b.tokens -= bytes as f64;
        if b.tokens < 0.0 {
            let wait = (-b.tokens / self.rate).min(60.0);
            drop(b);
            std::thread::sleep(Duration::from_secs_f64(wait));
        }
    }
}

/// (attempt, owner) → (chunk, payload hash) of the phase-1 frames sent.
pub(super) type SentHashes = std::collections::HashMap<(u32, usize), Vec<(usize, [u8; 32])>>;

/// What the coordinator, readers and writers of one peer share.
pub(super) struct Shared {
    pub input: Arc<TensorFile>,
    pub out: OutBuf,
    pub wire: Wire,
    /// The transport-only benchmark: same connections and bytes, no MAC, no arithmetic.
    pub transport_only: bool,
    /// The current attempt: writers drop queued data of older ones.
    pub attempt: AtomicU32,
    /// Writers hold it for reading while they send from the output; a new
    /// attempt takes it for writing, so no frame of an older attempt reads a
    /// region the new one rewrites.
    pub attempt_fence: RwLock<()>,
    pub rate: Option<RateLimit>,
    /// Set when the round is over: the listener and the links stop.
    pub stop: Arc<AtomicBool>,
    /// Hashes of the phase-1 chunks this peer sent: (attempt, owner) → (chunk, hash).
    pub sent: Mutex<SentHashes>,
    /// The output file and the offset of its data region, for positional writes.
    pub out_file: std::fs::File,
    pub out_data: u64,
    /// Frame buffers recycled between readers and the coordinator.
    pub pool: Mutex<Vec<Vec<u8>>>,
    /// Fault injection (tests): corrupt the next contribution chunk sent.
    pub corrupt_chunk: AtomicBool,
    /// Error feedback (`--residual`): the previous round's residual and the new one.
    pub residual: Option<super::residual::ResidualBufs>,
}

impl Shared {
    pub fn buffer(&self) -> Vec<u8> {
        self.pool.lock().unwrap().pop().unwrap_or_default()
    }

    pub fn recycle(&self, v: Vec<u8>) {
        let mut p = self.pool.lock().unwrap();
        if p.len() < 64 && v.capacity() > 0 {
            p.push(v);
        }
    }

    /// This peer's own gradient, f32 (checked when the round started).
    pub fn input_values(&self, start: usize, len: usize) -> &[f32] {
        &self.input.flat_f32().expect("checked")[start..start + len]
    }

    /// Writes result values for elements `start..` of the output.
    pub fn store(&self, start: usize, values: &[f32]) -> std::io::Result<()> {
        self.store_bytes(start, wire::f32_bytes(values))
    }

    /// As [`store`](Self::store) with the values as little-endian f32 bytes
    /// (an f32 result chunk as it came off the wire).
    pub fn store_bytes(&self, start: usize, bytes: &[u8]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.out_file
            .write_all_at(bytes, self.out_data + start as u64 * 4)
    }
}

/// Per-peer traffic counters.
#[derive(Default)]
pub(super) struct Counters {
    pub sent: AtomicU64,
    pub received: AtomicU64,
    sending: Mutex<Active>,
    receiving: Mutex<Active>,
}

/// From the first to the last time something happened.
#[derive(Default)]
struct Active {
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Active {
    fn mark(m: &Mutex<Active>) {
        let now = Instant::now();
        let mut a = m.lock().unwrap();
        a.first.get_or_insert(now);
        a.last = Some(now);
    }

    fn seconds(m: &Mutex<Active>) -> f64 {
        match *m.lock().unwrap() {
            Active {
                first: Some(a),
                last: Some(b),
            } => b.duration_since(a).as_secs_f64(),
            _ => 0.0,
        }
    }
}

impl Counters {
    /// Seconds from the first data frame sent to the last.
    pub fn send_seconds(&self) -> f64 {
        Active::seconds(&self.sending)
    }

    /// Seconds from the first data frame received to the last.
    pub fn recv_seconds(&self) -> f64 {
        Active::seconds(&self.receiving)
    }
}

/// Credits a reader holds for unconsumed data frames.
#[derive(Default)]
pub(super) struct Credits {
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

    pub fn release(&self) {
        let mut u = self.used.lock().unwrap();
        *u = u.saturating_sub(1);
        self.cv.notify_one();
    }

    /// Wakes a reader waiting for a credit (its link is closing).
    fn wake(&self) {
        self.cv.notify_all();
    }
}

/// What the coordinator queues for a peer's writer.
pub(super) enum Item {
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

/// What links, the listener and the dialers tell the coordinator.
pub(super) enum Event {
    Incoming(Session, TcpStream),
    Outgoing(Session, TcpStream),
    NoConnection(usize, String),
    Frame { from: usize, frame: wire::Frame },
    Lost { peer: usize, why: String },
}

/// A live link to one peer, as the coordinator holds it.
pub(super) struct Link {
    /// Queues frames for the writer (None once the link is closed).
    pub writer: Option<Sender<Item>>,
    pub credits: Arc<Credits>,
    pub counters: Arc<Counters>,
    streams: [TcpStream; 2],
    /// When a frame last came from the peer.
    pub last_seen: Instant,
}

impl Link {
    /// Starts the writer on `outgoing` and the reader on `incoming` (the two
    /// connections of this pair, one per direction).
    pub fn start(
        peer: usize,
        outgoing: (Session, TcpStream),
        incoming: (Session, TcpStream),
        shared: &Arc<Shared>,
        events: &Sender<Event>,
        write_timeout: Duration,
    ) -> Result<Link, Error> {
        let (out_session, out_stream) = outgoing;
        let (in_session, in_stream) = incoming;
        let counters = Arc::new(Counters::default());
        let credits = Arc::new(Credits::default());
        let _ = out_stream.set_write_timeout(Some(write_timeout));
        for s in [&out_stream, &in_stream] {
            let _ = s.set_nodelay(true);
        }
        let clone = |s: &TcpStream| s.try_clone().map_err(|e| Error::Io("socket".into(), e));
        let (writer, queue) = channel::<Item>();
        let mut send_key = out_session.send;
        let mut recv_key = in_session.recv;
        if shared.transport_only {
            send_key.set_insecure();
            recv_key.set_insecure();
        }
        let w = Writer {
            with: Vec::new(),
            decoded: Vec::new(),
            stream: BufWriter::with_capacity(1 << 20, clone(&out_stream)?),
            key: send_key,
            queue,
            shared: shared.clone(),
            counters: counters.clone(),
            peer,
            events: events.clone(),
        };
        let r = Reader {
            stream: BufReader::with_capacity(64 << 10, clone(&in_stream)?),
            key: recv_key,
            shared: shared.clone(),
            counters: counters.clone(),
            credits: credits.clone(),
            peer,
            events: events.clone(),
        };
        std::thread::spawn(move || w.run());
        std::thread::spawn(move || r.run());
        Ok(Link {
            writer: Some(writer),
            credits,
            counters,
            streams: [out_stream, in_stream],
            last_seen: Instant::now(),
        })
    }

    /// Closes both connections: the reader and writer threads end on them.
    pub fn close(&mut self) {
        self.writer = None;
        for s in &self.streams {
            let _ = s.shutdown(Shutdown::Both);
        }
        self.credits.wake();
    }
}

/// Sends what the coordinator queues for one peer, in order.
struct Writer {
    /// A contribution chunk plus its residual, and what receivers decode of it.
    with: Vec<f32>,
    decoded: Vec<f32>,
    stream: BufWriter<TcpStream>,
    key: MacKey,
    queue: Receiver<Item>,
    shared: Arc<Shared>,
    counters: Arc<Counters>,
    peer: usize,
    events: Sender<Event>,
}

impl Writer {
    fn run(mut self) {
        let mut buf = Vec::new();
        while let Ok(item) = self.queue.recv() {
            let sent = match item {
                Item::Barrier(ack) => {
                    let _ = self.stream.flush();
                    let _ = ack.send(());
                    continue;
                }
                Item::Control {
                    kind,
                    attempt,
                    payload,
                } => self
                    .key
                    .write_frame(&mut self.stream, kind, attempt, &[&payload])
                    .map(|(n, _)| n),
                data => match self.send_data(data, &mut buf) {
                    Some(r) => r,
                    None => continue, // stale: the attempt was aborted
                },
            };
            // frames are large and control frames must not wait: flush each one
            match sent.and_then(|n| self.stream.flush().map(|_| n)) {
                Ok(n) => {
                    self.counters.sent.fetch_add(n, Ordering::Relaxed);
                }
                Err(e) => {
                    if !self.shared.stop.load(Ordering::Relaxed) {
                        let _ = self.events.send(Event::Lost {
                            peer: self.peer,
                            why: format!("sending failed: {e}"),
                        });
                    }
                    return;
                }
            }
        }
    }

    /// Sends a data chunk of the current attempt (None: of an older one).
    fn send_data(&mut self, item: Item, buf: &mut Vec<u8>) -> Option<std::io::Result<u64>> {
        let (attempt, owner, chunk, start, len, prehashed) = match item {
            Item::Phase1 {
                attempt,
                owner,
                chunk,
                start,
                len,
            } => (attempt, owner, chunk, start, len, None),
            Item::Phase2 {
                attempt,
                owner,
                chunk,
                start,
                len,
                hash,
            } => (attempt, owner, chunk, start, len, Some(hash)),
            _ => unreachable!("data items only"),
        };
        let sh = self.shared.clone();
        if attempt != sh.attempt.load(Ordering::Acquire) {
            return None;
        }
        let phase1 = prehashed.is_none();
        let _fence = sh.attempt_fence.read().unwrap();
        let hdr = data_header(if phase1 { 1 } else { 2 }, owner, chunk);
        let values: &[f32] = match (&sh.residual, phase1 || sh.transport_only) {
            (Some(r), true) if !sh.transport_only => {
                // SAFETY: this chunk's region of the new residual is this
                // writer's alone (each element is sent to one owner)
                unsafe {
                    let input = sh.input_values(start, len);
                    r.quantise(sh.wire, start, input, &mut self.with, &mut self.decoded);
                }
                &self.with
            }
            (_, true) => sh.input_values(start, len),
            // SAFETY: result regions are final before they are enqueued (see OutBuf).
            (_, false) => unsafe { sh.out.region(start, len) },
        };
        let payload: &[u8] = match sh.wire {
            Wire::F32 => wire::f32_bytes(values),
            w => {
                let n = w.encode_to(values, buf).len();
                // fault injection: byte 2 is a ternary block's first trits (243 decodes to none)
                if phase1 && n > 2 && sh.corrupt_chunk.swap(false, Ordering::Relaxed) {
                    buf[2] = 243;
                }
                &buf[..n]
            }
        };
        if let Some(rl) = &sh.rate {
            rl.take((payload.len() + DATA_HDR) as u64);
        }
        let parts: [&[u8]; 2] = [&hdr, payload];
        let r = match prehashed {
            Some(h) => {
                self.key
                    .write_frame_hashed(&mut self.stream, kind::DATA, attempt, &parts, h)
            }
            None => self
                .key
                .write_frame(&mut self.stream, kind::DATA, attempt, &parts),
        };
        Active::mark(&self.counters.sending);
        if let (true, Ok((_, h))) = (phase1, &r) {
            let mut sent = sh.sent.lock().unwrap();
            sent.entry((attempt, owner)).or_default().push((chunk, *h));
        }
        Some(r.map(|(n, _)| n))
    }
}

/// Reads one peer's frames and hands them to the coordinator.
struct Reader {
    /// small: 2 MiB payloads bypass the buffer and land in the frame buffer directly
    stream: BufReader<TcpStream>,
    key: MacKey,
    shared: Arc<Shared>,
    counters: Arc<Counters>,
    credits: Arc<Credits>,
    peer: usize,
    events: Sender<Event>,
}

impl Reader {
    fn run(mut self) {
        let sh = self.shared.clone();
        loop {
            self.credits.acquire(&sh.stop);
            let frame = match self.key.read_frame_into(&mut self.stream, sh.buffer()) {
                Ok(frame) => frame,
                Err(e) => return self.lost(e),
            };
            let on_wire = (frame.payload.len() + wire::HEADER + wire::MAC_LEN) as u64;
            self.counters.received.fetch_add(on_wire, Ordering::Relaxed);
            if frame.kind == kind::DATA {
                Active::mark(&self.counters.receiving);
            } else {
                // only data frames hold credits
                self.credits.release();
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
            let from = self.peer;
            if self.events.send(Event::Frame { from, frame }).is_err() {
                return;
            }
        }
    }

    fn lost(&self, e: wire::FrameError) {
        if self.shared.stop.load(Ordering::Relaxed) {
            return;
        }
        let why = match &e {
            wire::FrameError::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
                "closed the connection".to_string()
            }
            e => format!("receiving failed: {e}"),
        };
        let peer = self.peer;
        let _ = self.events.send(Event::Lost { peer, why });
    }
}
