//! Attempts: with a fixed member set, phase 1 (every contributor streams its
//! copy of each span to the span's owner), the owner's chunk reduce, phase 2
//! (each owner streams its averaged span to every member), then the
//! confirmation that every member holds the same result. Attempts repeat,
//! with the survivors, until one is confirmed or the deadline passes.
//!
//! Why chunks: an owner reduces chunk c as soon as every contribution to it
//! arrived and sends it on while the next chunks are still on the wire, so
//! the phases overlap and memory stays a few chunks per peer.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::chunks::{chunk_hash, DataHeader, DATA_HDR};
use super::coordinator::{Coordinator, Stop};
use super::link::{Event, Item};
use super::mean::{all_finite, centered_clip, weighted_mean_of, Values};
use super::peers::Plan;
use super::wire::{self, kind, Wire};
use super::Error;

/// A confirmed round, as the transcript records it.
pub(super) struct Finished {
    pub attempt: u32,
    pub members: Vec<usize>,
    pub reduced: Reduced,
    pub confirmed_by: Vec<usize>,
    /// From the start of the confirmed attempt to its confirmation.
    pub seconds: f64,
}

/// What one attempt produced on this peer.
pub(super) struct Reduced {
    pub plan: Plan,
    /// (owner, contributor) → the contribution's hash, for my span and my contributions.
    pub contributions: HashMap<(usize, usize), String>,
    pub sum_weight: u64,
    pub tokens: u64,
    /// blake3 of every result chunk's hash, in vector order.
    pub result_hash: [u8; 32],
}

/// A phase-1 chunk received and not yet reduced.
struct Pending {
    chunk: usize,
    payload: Vec<u8>,
    hash: [u8; 32],
}

/// Buffers reused from chunk to chunk.
#[derive(Default)]
struct Scratch {
    /// Centered clipping's f64 aggregate.
    clipped: Vec<f64>,
    /// A received result chunk (bf16, q8 or ternary) decoded before it is written.
    decoded: Vec<f32>,
    /// Per contributor: its chunk decoded to f32 where needed.
    contributions: Vec<Vec<f32>>,
    /// A result chunk encoded for hashing.
    encoded: Vec<u8>,
    /// Error feedback: a result chunk plus its residual, and its decoding.
    with_residual: Vec<f32>,
    decoded_result: Vec<f32>,
}

/// The state of one attempt on this peer.
struct Attempt<'m> {
    number: u32,
    members: &'m [usize],
    plan: Plan,
    /// Members with a positive weight, in rank order.
    contributors: Vec<usize>,
    sum_weight: u64,
    tokens: u64,
    /// My span, and the next chunk of it to reduce.
    my_start: usize,
    my_len: usize,
    my_chunks: usize,
    next_chunk: usize,
    /// Received contributions to my span, per remote contributor, in order.
    pending: HashMap<usize, VecDeque<Pending>>,
    /// The contribution hash: blake3 of the chunk payload hashes, in chunk order.
    contribution_hash: HashMap<usize, blake3::Hasher>,
    /// Result chunks still missing per other owner, and those received.
    missing: HashMap<usize, usize>,
    received: HashSet<(usize, usize)>,
    /// (owner, chunk) → blake3 of that result chunk's phase-2 payload.
    result_hashes: BTreeMap<(usize, usize), [u8; 32]>,
    scratch: Scratch,
    /// A chunk's result, written to the output and read back by the writers.
    result: Vec<f32>,
    last_progress: Instant,
    phase1_bar: indicatif::ProgressBar,
    phase2_bar: indicatif::ProgressBar,
}

/// Why a chunk of my span could not be reduced.
enum ChunkFault {
    /// The mean is not finite: the remote contributor to blame, or None
    /// (mine, or nobody's).
    NonFinite(Option<usize>),
    /// A contributor's bytes do not decode.
    Malformed(usize, super::wire::Malformed),
}

/// What goes into one chunk of my span's result.
struct ChunkParts<'a> {
    /// Members with a positive weight, in rank order.
    contributors: &'a [usize],
    sum_weight: u64,
    /// The remote contributors' frames, in rank order.
    frames: &'a [(usize, Vec<u8>)],
    /// The chunk's first element in the vector.
    start: usize,
}

/// "1 peer", "3 peers".
fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

impl Coordinator {
    /// Attempts until one completes and is confirmed.
    pub fn rounds(&mut self, n_elem: usize, min_peers: usize) -> Result<Finished, Error> {
        let mut candidates: BTreeSet<usize> = (0..self.peers.len()).collect();
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
            drop(self.sh.attempt_fence.write().unwrap());
            let started = Instant::now();
            let reduced = match self.attempt(attempt, &members, n_elem) {
                Ok(reduced) => reduced,
                Err(Stop::Abort) => {
                    attempt += 1;
                    continue;
                }
                Err(Stop::NoContributors) => return Err(Error::NoContributors),
                Err(Stop::Io(e)) => {
                    let e = std::io::Error::other(e);
                    return Err(Error::Io("writing the output".into(), e));
                }
            };
            match self.confirm(attempt, &members, reduced.result_hash)? {
                Some(confirmed_by) => {
                    return Ok(Finished {
                        attempt,
                        members,
                        reduced,
                        confirmed_by,
                        seconds: started.elapsed().as_secs_f64(),
                    })
                }
                None => attempt += 1,
            }
        }
    }

    /// One attempt with a fixed member set: this peer's result once it holds
    /// the whole averaged vector.
    fn attempt(&mut self, a: u32, members: &[usize], n_elem: usize) -> Result<Reduced, Stop> {
        let mut at = self.begin(a, members, n_elem)?;
        self.send_contributions(&at);
        if let Err(stop) = self.until_complete(&mut at, a, members) {
            // the contributions held for this attempt give their credits
            // back: their senders' readers would otherwise wait for them
            // forever, and the next attempt's frames come over those links
            for (from, held) in std::mem::take(&mut at.pending) {
                held.iter().for_each(|_| self.release(from));
            }
            return Err(stop);
        }
        Ok(self.finish(at))
    }

    /// Runs the attempt until this peer holds the whole averaged vector.
    fn until_complete(&mut self, at: &mut Attempt, a: u32, members: &[usize]) -> Result<(), Stop> {
        loop {
            self.check_alive(at)?;
            while at.next_chunk < at.my_chunks && at.pending.values().all(|q| !q.is_empty()) {
                self.reduce_next_chunk(at)?;
            }
            if at.next_chunk == at.my_chunks && at.missing.values().all(|&m| m == 0) {
                return Ok(());
            }
            self.take_data_frames(at)?;
            if members.iter().any(|r| self.failed.contains_key(r)) {
                continue;
            }
            self.fail_the_silent(at);
            if let Some(ev) = self.pump(Duration::from_millis(5)) {
                self.handle_lost(ev, a);
            }
        }
    }

    /// The attempt's plan, weights and bookkeeping.
    fn begin<'m>(&self, a: u32, members: &'m [usize], n_elem: usize) -> Result<Attempt<'m>, Stop> {
        let plan = Plan::new(members, &self.peers, n_elem);
        let contributors: Vec<usize> = members
            .iter()
            .copied()
            .filter(|&r| self.weight(r) > 0)
            .collect();
        // announced weights are capped (see `announced_weight_ok`), so these cannot wrap
        let sum_weight = contributors
            .iter()
            .fold(0u64, |s, &r| s.saturating_add(self.weight(r)));
        let tokens = contributors
            .iter()
            .fold(0u64, |s, r| s.saturating_add(self.announced[r].tokens));
        if sum_weight == 0 {
            // every member sees the same weights: all stop the same way
            return Err(Stop::NoContributors);
        }
        let chunk = self.chunk;
        let (my_start, my_len) = plan.span_of(self.me).expect("I am a member");
        let pending: HashMap<usize, VecDeque<Pending>> = contributors
            .iter()
            .filter(|&&r| r != self.me)
            .map(|&r| (r, VecDeque::new()))
            .collect();
        let contribution_hash = pending
            .keys()
            .map(|&r| (r, blake3::Hasher::new()))
            .collect();
        let others_spans = || {
            plan.owners
                .iter()
                .zip(&plan.spans)
                .filter(|(&o, _)| o != self.me)
        };
        let missing: HashMap<usize, usize> = others_spans()
            .map(|(&o, &(_, len))| (o, len.div_ceil(chunk)))
            .collect();
        // bars (a terminal only): the contributions to my span, then the others' results
        let span_bytes = |len: usize| -> u64 {
            (0..len.div_ceil(chunk))
                .map(|c| self.wire.encoded_len(chunk.min(len - c * chunk)) as u64)
                .sum()
        };
        let phase1_bar = crate::progress::bytes_bar(
            pending.len() as u64 * span_bytes(my_len),
            &format!("phase 1: from {}", count(pending.len(), "peer")),
        );
        let phase2_bar = crate::progress::bytes_bar(
            others_spans().map(|(_, &(_, len))| span_bytes(len)).sum(),
            &format!("phase 2: from {}", count(missing.len(), "owner")),
        );
        let scratch = Scratch {
            clipped: vec![0f64; if self.clip.is_some() { chunk } else { 0 }],
            contributions: vec![Vec::new(); contributors.len()],
            ..Scratch::default()
        };
        Ok(Attempt {
            number: a,
            members,
            contributors,
            sum_weight,
            tokens,
            my_start,
            my_len,
            my_chunks: my_len.div_ceil(chunk),
            next_chunk: 0,
            pending,
            contribution_hash,
            missing,
            received: HashSet::new(),
            result_hashes: BTreeMap::new(),
            scratch,
            result: vec![0f32; chunk],
            last_progress: Instant::now(),
            phase1_bar,
            phase2_bar,
            plan,
        })
    }

    /// Phase 1: queues my contributions to every other owner, chunk by chunk.
    fn send_contributions(&self, at: &Attempt) {
        if self.weight(self.me) == 0 {
            return;
        }
        let chunk = self.chunk;
        for (&owner, &(start, len)) in at.plan.owners.iter().zip(&at.plan.spans) {
            if owner == self.me {
                continue;
            }
            for c in 0..len.div_ceil(chunk) {
                let s = start + c * chunk;
                let item = Item::Phase1 {
                    attempt: at.number,
                    owner,
                    chunk: c,
                    start: s,
                    len: chunk.min(start + len - s),
                };
                self.send(owner, item);
            }
        }
    }

    /// Ends the attempt when the deadline passed, someone aborted it or a
    /// member failed.
    fn check_alive(&mut self, at: &Attempt) -> Result<(), Stop> {
        let (a, members) = (at.number, at.members);
        if Instant::now() >= self.deadline {
            tracing::warn!(me = %self.name(self.me), "attempt {a}: the deadline passed");
            return Err(self.abort(a, members));
        }
        if let Some(from) = self.aborts.get(&a).and_then(|s| s.iter().next().copied()) {
            tracing::info!(me = %self.name(self.me), "{} aborted attempt {a}", self.name(from));
            return Err(self.abort(a, members));
        }
        if let Some(r) = members.iter().find(|r| self.failed.contains_key(r)) {
            tracing::info!(me = %self.name(self.me), "attempt {a}: member {} has failed", self.name(*r));
            return Err(self.abort(a, members));
        }
        Ok(())
    }

    /// Reduces the next chunk of my span (all its contributions are here) and
    /// queues the result for every member.
    fn reduce_next_chunk(&mut self, at: &mut Attempt) -> Result<(), Stop> {
        let c = at.next_chunk;
        let s = at.my_start + c * self.chunk;
        let l = self.chunk.min(at.my_start + at.my_len - s);
        let frames = self.take_contributions(at, l)?;
        let res: &mut [f32] = &mut at.result[..l];
        let reduced = if self.sh.transport_only {
            res.copy_from_slice(self.sh.input_values(s, l));
            Ok(())
        } else {
            let parts = ChunkParts {
                contributors: &at.contributors,
                sum_weight: at.sum_weight,
                frames: &frames,
                start: s,
            };
            self.mean_of_chunk(&parts, res, &mut at.scratch)
        };
        for (_, p) in frames {
            self.sh.recycle(p);
        }
        match reduced {
            Ok(()) => {}
            Err(ChunkFault::NonFinite(Some(r))) => {
                self.fail(r, at.number, "its contribution contains NaN or Inf");
                return Err(self.abort(at.number, at.members));
            }
            Err(ChunkFault::NonFinite(None)) => {
                return Err(Stop::Io("the average is not finite".into()))
            }
            Err(ChunkFault::Malformed(r, e)) => {
                self.fail(r, at.number, format!("malformed chunk: {e}"));
                return Err(self.abort(at.number, at.members));
            }
        }
        if !self.sh.transport_only {
            // the result as every receiver will decode it; writers read it from the mapping
            match &self.sh.residual {
                Some(r) => {
                    let sc = &mut at.scratch;
                    // SAFETY: my span's chunk: only this thread writes its residual
                    unsafe {
                        r.quantise(
                            self.wire,
                            s,
                            res,
                            &mut sc.with_residual,
                            &mut sc.decoded_result,
                        )
                    };
                    res.copy_from_slice(&sc.decoded_result);
                }
                None => self.wire.round_trip(res),
            }
            if std::mem::take(&mut self.fault.nan_result) {
                res[0] = f32::NAN;
            }
        }
        // written before writers read it back from the output (the floor writes too)
        if let Err(e) = self.sh.store(s, res) {
            tracing::error!(me = %self.name(self.me), "writing the output failed: {e}");
            return Err(Stop::Io(e.to_string()));
        }
        // the chunk's identity: blake3 of the phase-2 payload every member receives
        let hash = if self.sh.transport_only {
            [0u8; 32]
        } else {
            chunk_hash(2, self.me, c, res, self.wire, &mut at.scratch.encoded)
        };
        at.result_hashes.insert((self.me, c), hash);
        for &r in at.members.iter().filter(|&&r| r != self.me) {
            let item = Item::Phase2 {
                attempt: at.number,
                owner: self.me,
                chunk: c,
                start: s,
                len: l,
                hash,
            };
            self.send(r, item);
        }
        at.next_chunk += 1;
        at.last_progress = Instant::now();
        Ok(())
    }

    /// Takes the next chunk's frame from every remote contributor (giving
    /// back their credits) and checks their order and sizes; a bad one fails
    /// its sender and aborts the attempt.
    fn take_contributions(
        &mut self,
        at: &mut Attempt,
        len: usize,
    ) -> Result<Vec<(usize, Vec<u8>)>, Stop> {
        let due = at.next_chunk;
        let mut frames: Vec<(usize, Vec<u8>)> = Vec::with_capacity(at.contributors.len());
        let mut bad: Option<(usize, String)> = None;
        for &r in at.contributors.iter().filter(|&&r| r != self.me) {
            let p = at.pending.get_mut(&r).unwrap().pop_front().unwrap();
            self.release(r);
            if p.chunk != due && bad.is_none() {
                bad = Some((r, format!("sent chunk {} where {due} was due", p.chunk)));
            }
            at.contribution_hash.get_mut(&r).unwrap().update(&p.hash);
            frames.push((r, p.payload));
        }
        // their sizes (finiteness is checked on the result)
        if bad.is_none() && !self.sh.transport_only {
            let want = self.wire.encoded_len(len);
            if let Some((r, p)) = frames.iter().find(|(_, p)| p.len() - DATA_HDR != want) {
                let got = p.len() - DATA_HDR;
                bad = Some((*r, format!("malformed chunk: {got} bytes for {len} values")));
            }
        }
        let Some((r, why)) = bad else {
            return Ok(frames);
        };
        for (_, p) in frames {
            self.sh.recycle(p);
        }
        self.fail(r, at.number, why);
        Err(self.abort(at.number, at.members))
    }

    /// The weighted mean (or the clipped aggregate) of one chunk into `res`.
    /// Err when it is not finite (with the remote contributor whose values
    /// are not, or None when mine are) or a contribution does not decode.
    fn mean_of_chunk(
        &self,
        parts: &ChunkParts,
        res: &mut [f32],
        scratch: &mut Scratch,
    ) -> Result<(), ChunkFault> {
        let ChunkParts {
            contributors,
            sum_weight,
            frames,
            start,
        } = *parts;
        let l = res.len();
        let mine = self.sh.input_values(start, l);
        // the contributions as they arrived (f32 in place, bf16 and q8
        // decoded inside the sum); centered clipping wants them as f32
        let mut views: Vec<(u64, Values)> = Vec::with_capacity(contributors.len());
        let mut remote = frames.iter().zip(scratch.contributions.iter_mut());
        for &r in contributors {
            let w = self.weight(r);
            if r == self.me {
                views.push((w, Values::F32(mine)));
            } else {
                let ((_, payload), sc) = remote.next().unwrap();
                let body = &payload[DATA_HDR..];
                match Values::of(self.wire, body, l, sc, self.clip.is_some()) {
                    Ok(v) => views.push((w, v)),
                    Err(e) => return Err(ChunkFault::Malformed(r, e)),
                }
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
                let acc = &mut scratch.clipped[..l];
                centered_clip(&f32_views, tau, acc);
                res.iter_mut()
                    .zip(acc.iter())
                    .for_each(|(o, &x)| *o = x as f32);
                all_finite(res)
            }
            None => weighted_mean_of(&views, sum_weight, res),
        };
        // a NaN or Inf in any contribution makes the mean non-finite: only
        // then look for who sent it
        if finite || self.allow_nonfinite {
            return Ok(());
        }
        let culprit = contributors
            .iter()
            .zip(&views)
            .find(|(_, (_, v))| !v.all_finite())
            .map(|(&r, _)| r);
        Err(ChunkFault::NonFinite(culprit.filter(|&r| r != self.me)))
    }

    /// Files the buffered data frames of this attempt: contributions to my
    /// span, and results of the others' spans.
    fn take_data_frames(&mut self, at: &mut Attempt) -> Result<(), Stop> {
        while let Some((from, frame)) = self.data.pop_front() {
            if frame.attempt != at.number {
                self.release(from);
                continue;
            }
            let Some(hdr) = DataHeader::parse(&frame.payload) else {
                self.release(from);
                self.fail(from, at.number, "malformed data frame");
                break;
            };
            match hdr.phase {
                1 if hdr.owner == self.me && at.pending.contains_key(&from) => {
                    // the credit is released when the chunk is consumed
                    let body = frame.payload.len().saturating_sub(DATA_HDR);
                    at.phase1_bar.inc(body as u64);
                    at.pending.get_mut(&from).unwrap().push_back(Pending {
                        chunk: hdr.chunk,
                        payload: frame.payload,
                        hash: frame.hash,
                    });
                }
                2 if hdr.owner == from && at.missing.contains_key(&from) => {
                    self.release(from);
                    if !self.receive_result_chunk(at, from, hdr.chunk, frame)? {
                        break;
                    }
                }
                phase => {
                    self.release(from);
                    let why = format!(
                        "sent an unexpected data frame (phase {phase}, span of rank {})",
                        hdr.owner
                    );
                    self.fail(from, at.number, why);
                    break;
                }
            }
        }
        Ok(())
    }

    /// Decodes a result chunk of `owner`'s span into the output. Ok(false)
    /// when the owner failed for it.
    fn receive_result_chunk(
        &mut self,
        at: &mut Attempt,
        owner: usize,
        c: usize,
        frame: wire::Frame,
    ) -> Result<bool, Stop> {
        let Some((start, len)) = at.plan.span_of(owner) else {
            return Ok(true);
        };
        at.phase2_bar
            .inc(frame.payload.len().saturating_sub(DATA_HDR) as u64);
        if c >= len.div_ceil(self.chunk) || at.received.contains(&(owner, c)) {
            let why = format!("sent result chunk {c} twice or out of range");
            self.fail(owner, at.number, why);
            return Ok(false);
        }
        let s = start + c * self.chunk;
        let l = self.chunk.min(start + len - s);
        let body = &frame.payload[DATA_HDR..];
        let stored = if self.sh.transport_only {
            // the floor writes what it received, unchecked
            self.sh.store_bytes(s, body)
        } else {
            let decoded = &mut at.scratch.decoded;
            let finite = match self.wire.check_result(body, l, decoded) {
                Ok(f) => f,
                Err(e) => {
                    self.fail(owner, at.number, format!("malformed result chunk: {e}"));
                    return Ok(false);
                }
            };
            if !self.allow_nonfinite && !finite {
                self.fail(owner, at.number, "its averaged span contains NaN or Inf");
                return Ok(false);
            }
            match self.wire {
                // as it came: little-endian f32, the file's format
                Wire::F32 => self.sh.store_bytes(s, body),
                _ => self.sh.store(s, &decoded[..l]),
            }
        };
        if let Err(e) = stored {
            return Err(Stop::Io(e.to_string()));
        }
        at.result_hashes.insert((owner, c), frame.hash);
        self.sh.recycle(frame.payload);
        at.received.insert((owner, c));
        *at.missing.get_mut(&owner).unwrap() -= 1;
        at.last_progress = Instant::now();
        Ok(true)
    }

    /// Fails a member we wait for that has been silent too long (while
    /// nothing else progressed either).
    fn fail_the_silent(&mut self, at: &Attempt) {
        let now = Instant::now();
        let me = self.me;
        for &r in at.members.iter().filter(|&&r| r != me) {
            let seen = self.links.get(&r).map_or(now, |l| l.last_seen);
            let waiting_contribution =
                at.next_chunk < at.my_chunks && at.pending.get(&r).is_some_and(|q| q.is_empty());
            let waiting_result = at.missing.get(&r).is_some_and(|&m| m > 0);
            let limit = if waiting_contribution {
                self.idle
            } else {
                self.idle * 2
            };
            if (waiting_contribution || waiting_result)
                && now.duration_since(seen) > limit
                && now.duration_since(at.last_progress) > limit
            {
                let silent = now.duration_since(seen).as_secs_f64();
                self.fail(r, at.number, format!("silent for {silent:.1}s"));
            }
        }
    }

    /// The attempt's result: contribution hashes for my span and my
    /// contributions, and the result hash.
    fn finish(&self, at: Attempt) -> Reduced {
        let mut contributions: HashMap<(usize, usize), String> = HashMap::new();
        for (r, h) in at.contribution_hash {
            contributions.insert((self.me, r), h.finalize().to_hex().to_string());
        }
        if self.weight(self.me) > 0 {
            let mut sent = self.sh.sent.lock().unwrap();
            for &o in at.plan.owners.iter().filter(|&&o| o != self.me) {
                let mut list = sent.remove(&(at.number, o)).unwrap_or_default();
                list.sort_by_key(|x| x.0);
                let mut h = blake3::Hasher::new();
                list.iter().for_each(|(_, x)| {
                    h.update(x);
                });
                contributions.insert((o, self.me), h.finalize().to_hex().to_string());
            }
        }
        let mut rh = blake3::Hasher::new();
        for h in at.result_hashes.values() {
            rh.update(h);
        }
        Reduced {
            plan: at.plan,
            contributions,
            sum_weight: at.sum_weight,
            tokens: at.tokens,
            result_hash: *rh.finalize().as_bytes(),
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
        let started = Instant::now();
        loop {
            self.check_deadline("waiting for the others to confirm the result")?;
            if self.aborts.get(&a).is_some_and(|s| !s.is_empty()) {
                let _ = self.abort(a, members);
                return Ok(None);
            }
            let dones = self.dones.get(&a).cloned().unwrap_or_default();
            if let Some((&r, _)) = dones.iter().find(|(_, h)| **h != mine) {
                let why = format!("{} holds a different result", self.name(r));
                return Err(Error::Mismatch(why));
            }
            let waiting: Vec<usize> = members
                .iter()
                .copied()
                .filter(|&r| {
                    r != self.me && !self.failed.contains_key(&r) && !dones.contains_key(&r)
                })
                .collect();
            if waiting.is_empty() {
                let mut confirmed = vec![self.me];
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
                let finished = matches!(&ev, Event::Lost { peer, .. }
                    if self.dones.get(&a).is_some_and(|d| d.contains_key(peer)));
                if !finished {
                    self.handle_lost(ev, a);
                }
            }
        }
    }
}
