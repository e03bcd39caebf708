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
//! inside the sum), checks finiteness in the same passes, and the few loops
//! over whole chunks are compiled for AVX-512 and AVX2 as well
//! ([`crate::simd`]). The output's blocks are reserved while the peers connect
//! (a full disk fails the round before it starts), but its pages are not
//! mapped in: each result chunk is written with `pwrite` as it is ready (an f32
//! result straight from the frame it came in), so the output is filled while
//! the bytes flow, and no page is zero-filled only to be overwritten.
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
//!
//! # Where the code is, by role
//!
//! [`mean`]: the arithmetic (weighted mean, centered clipping).
//! [`link`]: one peer's writer and reader threads and what they share.
//! [`connect`]: the listener, the dialers and the connection phase.
//! `coordinator`: the thread that decides; `membership`: agreeing on the
//! members; `attempt`: phase 1, the chunk reduce, phase 2 and confirmation.
//! [`chunks`]: data chunk headers and the hashes transcripts record.
//! [`handshake`], [`wire`], [`peers`], [`transcript`]: the protocol's parts.

mod attempt;
pub mod chunks;
pub mod connect;
mod coordinator;
pub mod handshake;
pub mod link;
pub mod mean;
mod membership;
pub mod peers;
pub mod residual;
pub mod transcript;
pub mod wire;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::keys::Key;
use crate::tensors::{GradMeta, TensorFile, TensorWriter};
use attempt::Finished;
use chunks::layout_digest;
use connect::{Dialer, Identity, Listener, Parker, HANDSHAKE_TIME};
use coordinator::{anon_rss, Announced, Coordinator, Settings, Timing};
use link::{OutBuf, RateLimit, Shared};
use membership::Fault;
use peers::Peers;
use residual::Residual;
use transcript::{Body, Contribution, PeerEntry, SpanRecord, Traffic, Transcript};
use wire::Wire;

pub use chunks::{contribution_hash, result_hash};
pub use mean::{
    all_finite, centered_clip, parse_clip, weighted_mean, weighted_mean_of, BadClip, Values,
};
pub use membership::who_leaves;

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
    #[error(transparent)]
    Residual(#[from] residual::Error),
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
    /// The transport-only benchmark (`--floor`): same connections and bytes,
    /// no MAC, no arithmetic; the bytes received are written to the output.
    pub transport_only: bool,

    /// Members needed to finish (default: a majority of the peers file), so a
    /// partitioned minority cannot finish on its own and diverge.
    pub min_peers: Option<usize>,
    /// Error feedback: the residual file kept across rounds (see [`residual`]).
    pub residual: Option<PathBuf>,
    /// DiLoCo: the round averages pseudo-gradients of this many inner steps
    /// (an input that says otherwise is refused; peers that expect another
    /// number do not connect).
    pub inner_steps: Option<usize>,
}

/// What a finished round produced.
pub struct Outcome {
    pub transcript: Transcript,
    pub timings: Timings,
}

// ---------------------------------------------------------------------------
// shared state between the coordinator, readers and writers

/// This peer's input: the gradient, its metadata and what it announces.
struct Input {
    file: Arc<TensorFile>,
    meta: GradMeta,
    weight: u64,
    tokens: u64,
    layout: [u8; 32],
}

impl Input {
    /// Opens `--in` and checks its weight under the peers file's cap (its
    /// values are checked by [`Input::check_finite`], while the peers connect).
    fn open(cfg: &Config) -> Result<Input, Error> {
        let file = Arc::new(TensorFile::open(&cfg.input)?);
        let meta = match GradMeta::read(&file) {
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
        file.flat_f32()?;
        let weight = cfg.weight.unwrap_or(meta.sequences);
        let steps = file.metadata().get("inner_steps").cloned();
        if weight > 0 && steps != cfg.inner_steps.map(|h| h.to_string()) {
            let says = |h: Option<String>| match h {
                Some(h) => format!("a pseudo-gradient of {h} inner steps"),
                None => "a plain gradient".to_string(),
            };
            return Err(Error::Weight(format!(
                "--in is {}, the round expects {} (--inner-steps)",
                says(steps),
                says(cfg.inner_steps.map(|h| h.to_string()))
            )));
        }
        if weight > cfg.peers.max_weight {
            return Err(Error::Weight(format!(
                "this peer's weight {weight} is above the peers file's max_weight {}",
                cfg.peers.max_weight
            )));
        }
        let tokens = if weight == 0 { 0 } else { meta.tokens };
        let layout = layout_digest(&file, &meta.model, cfg.inner_steps);
        Ok(Input {
            file,
            meta,
            weight,
            tokens,
            layout,
        })
    }

    /// A contributor's values are all finite (a receive-only peer's input is
    /// a placeholder for the layout: its values are never sent).
    fn check_finite(&self, allow_nonfinite: bool) -> Result<(), Error> {
        let flat = self.file.flat_f32()?;
        if self.weight > 0 && !allow_nonfinite && !flat.par_chunks(1 << 20).all(all_finite) {
            return Err(Error::NonFinite);
        }
        Ok(())
    }
}

/// This peer's rank, after checking `--key` against the peers file: the
/// others would refuse a handshake signed by another key.
fn my_rank(cfg: &Config) -> Result<usize, Error> {
    let me = cfg
        .peers
        .rank(&cfg.me)
        .ok_or_else(|| Error::NotAPeer(cfg.me.clone()))?;
    let pinned = &cfg.peers.list[me].pubkey;
    if *pinned != cfg.key.public() {
        return Err(Error::WrongKey {
            name: cfg.me.clone(),
            pinned: pinned.to_hex(),
            have: cfg.key.public().to_hex(),
        });
    }
    Ok(me)
}

/// The output, created at its final size while the peers connect (its
/// metadata is filled in at the end), and what the links share.
fn create_output(
    cfg: &Config,
    input: &Input,
    stop: Arc<AtomicBool>,
    residual: Option<&Residual>,
    corrupt_chunk: bool,
) -> Result<(TensorWriter, Arc<Shared>), Error> {
    let room: usize = 256
        + cfg
            .peers
            .list
            .iter()
            .map(|p| p.name.len() + 1)
            .sum::<usize>()
        + cfg.round.len();
    let specs = input.file.specs();
    // its blocks reserved now, while the peers connect; its pages come as
    // the results are written
    let mut out = TensorWriter::create_for_pwrite(&cfg.output, &specs, &BTreeMap::new(), room)?;
    let (out_file, out_data) = out
        .data_file()
        .map_err(|e| Error::Io(cfg.output.display().to_string(), e))?;
    let region = out.flat_f32_mut();
    let out_buf = OutBuf {
        ptr: region.as_mut_ptr(),
        len: region.len(),
    };
    let shared = Shared {
        input: input.file.clone(),
        out: out_buf,
        wire: cfg.wire,
        transport_only: cfg.transport_only,
        attempt: AtomicU32::new(0),
        attempt_fence: RwLock::new(()),
        rate: cfg.max_rate.map(RateLimit::new),
        stop,
        sent: Mutex::new(Default::default()),
        out_file,
        out_data,
        pool: Mutex::new(Vec::new()),
        residual: residual.map(|r| r.bufs.clone()),
        corrupt_chunk: AtomicBool::new(corrupt_chunk),
    };
    Ok((out, Arc::new(shared)))
}

/// Where a round's time went, in seconds from the start of [`run`].
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Timings {
    /// Opening the input and checking the key.
    pub open: f64,
    /// Checking the input's values, while the peers connect.
    pub check: f64,
    /// Creating the output (its blocks reserved), while the peers connect.
    pub output: f64,
    /// Waiting for the connections after that.
    pub connect: f64,
    /// Every attempt, from the first membership sync to the confirmed result.
    pub rounds: f64,
    /// Writing the output's metadata and renaming it into place.
    pub finish: f64,
    pub total: f64,
}

/// Lap times: each call returns the seconds since the previous one.
struct Laps(Instant);

impl Laps {
    fn lap(&mut self) -> f64 {
        let now = Instant::now();
        let s = now.duration_since(self.0).as_secs_f64();
        self.0 = now;
        s
    }
}

/// Runs one peer's side of a round: the listener and dialers start first, so
/// the connections are made while this peer checks its input and creates its
/// output; then the attempts; then the output and the transcript.
pub fn run(cfg: Config) -> Result<Outcome, Error> {
    let t_start = Instant::now();
    let mut laps = Laps(t_start);
    let mut timings = Timings::default();
    let me = my_rank(&cfg)?;
    let input = Input::open(&cfg)?;
    let n_elem = input.file.flat_f32()?.len();
    let idle = (cfg.deadline / 6).clamp(Duration::from_millis(500), Duration::from_secs(30));
    let connect_for = (cfg.deadline / 5).clamp(Duration::from_secs(1), Duration::from_secs(30));
    timings.open = laps.lap();

    let identity = Arc::new(Identity {
        round: cfg.round.clone(),
        me,
        key: cfg.key.clone(),
        peers: cfg.peers.clone(),
        weight: input.weight,
        tokens: input.tokens,
        layout: input.layout,
    });
    let stop = Arc::new(AtomicBool::new(false));
    // the listener stops when the connection phase ends (no link starts later)
    let stop_listening = Arc::new(AtomicBool::new(false));
    let (events, events_rx) = channel();
    let within = HANDSHAKE_TIME.min(connect_for);
    match &cfg.peers.list[me].relay {
        Some(relay) => {
            let parker = Parker {
                relay: relay.clone(),
                identity: identity.clone(),
                stop: stop_listening.clone(),
                events: events.clone(),
                within,
            };
            std::thread::spawn(move || parker.run());
        }
        None => {
            let listener = Listener {
                listener: Listener::bind(&cfg.peers.list[me].addr)?,
                identity: identity.clone(),
                stop: stop_listening.clone(),
                events: events.clone(),
                within,
            };
            std::thread::spawn(move || listener.run());
        }
    }
    for peer in (0..cfg.peers.len()).filter(|&j| j != me) {
        let dialer = Dialer {
            peer,
            identity: identity.clone(),
            events: events.clone(),
            until: t_start + connect_for,
        };
        std::thread::spawn(move || dialer.run());
    }
    // while they connect
    let checked = input.check_finite(cfg.allow_nonfinite);
    timings.check = laps.lap();
    if let Err(e) = checked {
        stop_listening.store(true, std::sync::atomic::Ordering::Relaxed);
        return Err(e);
    }
    let residual = match &cfg.residual {
        Some(path) if !cfg.transport_only => {
            Some(Residual::open(path, &input.file, cfg.wire, &cfg.round)?)
        }
        _ => None,
    };
    let fault = Fault::from_env(&cfg.peers);
    let corrupt = fault.corrupt_chunk;
    let (mut out, sh) = create_output(&cfg, &input, stop, residual.as_ref(), corrupt)?;
    timings.output = laps.lap();

    let mine = Announced {
        weight: input.weight,
        tokens: input.tokens,
    };
    let timing = Timing {
        deadline: t_start + cfg.deadline,
        idle,
        connect_until: t_start + connect_for + Duration::from_secs(5),
    };
    let settings = Settings {
        fault,
        wire: cfg.wire,
        chunk: cfg.chunk,
        allow_nonfinite: cfg.allow_nonfinite,
        clip: cfg.clip,
    };
    let peers = cfg.peers.clone();
    let mut co = Coordinator::new(peers, me, sh.clone(), events_rx, mine, timing, settings);
    let connected = co.connect(events, input.layout);
    stop_listening.store(true, std::sync::atomic::Ordering::Relaxed);
    connected?;
    timings.connect = laps.lap();

    let min_peers = cfg.min_peers.unwrap_or(cfg.peers.len() / 2 + 1).max(1);
    let result = co.rounds(n_elem, min_peers);
    co.close_links();
    let finished = result?;
    timings.rounds = laps.lap();

    let contributors: Vec<usize> = finished
        .members
        .iter()
        .copied()
        .filter(|&r| co.weight(r) > 0)
        .collect();
    write_metadata(&mut out, &cfg, &co, &input, &finished, &contributors)?;
    // the average can be recomputed by another round: renamed into place, not fsynced
    {
        let _fence = sh.attempt_fence.write().unwrap();
        out.commit_no_sync()?;
        if let Some(r) = residual {
            r.commit(cfg.wire, &cfg.round)?;
        }
    }
    timings.finish = laps.lap();
    timings.total = t_start.elapsed().as_secs_f64();
    let body = transcript_body(&cfg, &co, n_elem, &finished, &contributors, &timings);
    Ok(Outcome {
        transcript: Transcript::sign(body, &cfg.key),
        timings,
    })
}

/// The output's metadata: the round's weights and tokens, its contributors,
/// round and wire.
fn write_metadata(
    out: &mut TensorWriter,
    cfg: &Config,
    co: &Coordinator,
    input: &Input,
    finished: &Finished,
    contributors: &[usize],
) -> Result<(), Error> {
    let mut meta = BTreeMap::new();
    GradMeta {
        model: input.meta.model.clone(),
        sequences: finished.reduced.sum_weight,
        tokens: finished.reduced.tokens,
    }
    .insert_into(&mut meta);
    let names: Vec<String> = contributors.iter().map(|&r| co.name(r)).collect();
    meta.insert("contributors".into(), names.join(","));
    meta.insert("round".into(), cfg.round.clone());
    meta.insert("wire".into(), cfg.wire.name().into());
    if let Some(h) = cfg.inner_steps {
        meta.insert("inner_steps".into(), h.to_string());
    }
    out.rewrite_metadata(&meta)?;
    Ok(())
}

/// The transcript of a finished round, as this peer saw it.
fn transcript_body(
    cfg: &Config,
    co: &Coordinator,
    n_elem: usize,
    finished: &Finished,
    contributors: &[usize],
    timings: &Timings,
) -> Body {
    let reduced = &finished.reduced;
    let plan = &reduced.plan;
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
                    weight: co.weight(c),
                    blake3: reduced.contributions.get(&(o, c)).cloned(),
                })
                .collect(),
        })
        .collect();
    let traffic = (0..co.peers.len())
        .filter(|&j| j != co.me)
        .map(|j| {
            let c = co.links.get(&j).map(|l| &l.counters);
            Traffic {
                peer: co.name(j),
                sent: c.map_or(0, |c| c.sent.load(std::sync::atomic::Ordering::Relaxed)),
                received: c.map_or(0, |c| c.received.load(std::sync::atomic::Ordering::Relaxed)),
                send_seconds: c.map_or(0.0, |c| c.send_seconds()),
                recv_seconds: c.map_or(0.0, |c| c.recv_seconds()),
                relayed: co.peers.list[j].relay.is_some() || co.peers.list[co.me].relay.is_some(),
            }
        })
        .collect();
    let names = |rs: &[usize]| rs.iter().map(|&r| co.name(r)).collect::<Vec<_>>();
    Body {
        version: 1,
        round: cfg.round.clone(),
        me: cfg.me.clone(),
        wire: cfg.wire.name().into(),
        chunk: co.chunk,
        elements: n_elem,
        bytes: (n_elem * 4) as u64,
        peers: (0..co.peers.len())
            .map(|r| PeerEntry {
                name: co.name(r),
                rank: r,
                weight: co.announced.get(&r).map(|a| a.weight),
            })
            .collect(),
        attempts: finished.attempt + 1,
        members: names(&finished.members),
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
        sum_weight: reduced.sum_weight,
        tokens: reduced.tokens,
        result: blake3::Hash::from(reduced.result_hash).to_hex().to_string(),
        confirmed_by: names(&finished.confirmed_by),
        // from the start until every link was up
        seconds_connect: timings.open + timings.check + timings.output + timings.connect,
        seconds_reduce: finished.seconds,
        seconds_total: timings.total,
        peak_anon_rss_bytes: co.peak_anon.max(anon_rss()),
    }
}
