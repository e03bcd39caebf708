//! Frames and number formats on the wire.
//!
//! After the handshake every frame is
//! `[u32 len][u8 kind][u32 attempt][payload: len bytes][16-byte MAC]`, all
//! little-endian. The MAC is keyed blake3 (the session key of that direction)
//! over the frame's sequence number, kind, attempt, length and the payload's
//! blake3, truncated to 128 bits: a frame that was altered, replayed,
//! reordered or taken from another session fails it. Hashing the payload once
//! serves twice: the same hash identifies the chunk in the round's transcript. Lengths above [`MAX_FRAME`] are refused
//! before anything is allocated. Data chunks go as raw little-endian numbers.
//!
//! Number formats: `f32` as is; `bf16` (round to nearest even) halves the bytes;
//! `q8` is blockwise 8-bit: per block of [`Q8_BLOCK`] values an f32 scale
//! (absmax/127) then one i8 per value; `ternary` is blockwise {−s, 0, +s}: per
//! block of [`TERNARY_BLOCK`] values a bf16 scale s (the block's least-squares
//! scale, see [`TernaryBlock`]), then one
//! trit t = round(x/s) ∈ {−1, 0, +1} per value, stored as t+1 five to a byte (base 3, first value lowest): 15 bytes
//! per 64 values, 1.875 bits a value. Made for error feedback, which carries
//! what quantisation loses into the next round.

use std::io::{self, IoSlice, Read, Write};

pub const MAX_FRAME: usize = 8 << 20;
pub const MAC_LEN: usize = 16;
pub const Q8_BLOCK: usize = 64;
/// Values per ternary block (a chunk is a whole number of them, as of q8 blocks).
pub const TERNARY_BLOCK: usize = 64;
const _: () = assert!(
    TERNARY_BLOCK == Q8_BLOCK,
    "chunks hold whole blocks of both"
);
pub const HEADER: usize = 9;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Wire {
    F32,
    Bf16,
    Q8,
    Ternary,
}

impl Wire {
    pub fn name(self) -> &'static str {
        match self {
            Wire::F32 => "f32",
            Wire::Bf16 => "bf16",
            Wire::Q8 => "q8",
            Wire::Ternary => "ternary",
        }
    }

    /// Encoded size of `n` values.
    pub fn encoded_len(self, n: usize) -> usize {
        match self {
            Wire::F32 => 4 * n,
            Wire::Bf16 => 2 * n,
            Wire::Q8 => n.div_ceil(Q8_BLOCK) * 4 + n,
            Wire::Ternary => {
                let whole = n / TERNARY_BLOCK * (2 + TERNARY_BLOCK.div_ceil(5));
                let rest = n % TERNARY_BLOCK;
                whole + if rest > 0 { 2 + rest.div_ceil(5) } else { 0 }
            }
        }
    }

    /// Appends the encoding of `x` to `out`.
    pub fn encode(self, x: &[f32], out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + self.encoded_len(x.len()), 0);
        self.encode_into(x, &mut out[start..]);
    }

    /// Encodes `x` into the front of `buf` (grown when too short, never
    /// shrunk or zero-filled again) and returns those bytes: the per-chunk
    /// form, with no memset of a reused buffer.
    pub fn encode_to<'a>(self, x: &[f32], buf: &'a mut Vec<u8>) -> &'a [u8] {
        let n = self.encoded_len(x.len());
        if buf.len() < n {
            buf.resize(n, 0);
        }
        let dst = &mut buf[..n];
        self.encode_into(x, dst);
        dst
    }

    /// Encodes `x` into `dst`, exactly `encoded_len(x.len())` bytes.
    fn encode_into(self, x: &[f32], dst: &mut [u8]) {
        match self {
            Wire::F32 => dst.copy_from_slice(f32_bytes(x)),
            Wire::Bf16 => bf16_encode(x, dst),
            Wire::Q8 => q8_encode(x, dst),
            Wire::Ternary => ternary_encode(x, dst),
        }
    }

    /// Decodes `n` values from `bytes` into `out` (which has length `n`).
    pub fn decode(self, bytes: &[u8], out: &mut [f32]) -> Result<(), Malformed> {
        self.decode_checked(bytes, out).map(|_| ())
    }

    /// As [`decode`](Self::decode), and tells in the same pass whether every
    /// decoded value is finite.
    pub fn decode_checked(self, bytes: &[u8], out: &mut [f32]) -> Result<bool, Malformed> {
        if bytes.len() != self.encoded_len(out.len()) {
            return Err(Malformed::Length {
                bytes: bytes.len(),
                values: out.len(),
                wire: self,
            });
        }
        Ok(match self {
            Wire::F32 => f32_decode(bytes, out),
            Wire::Bf16 => bf16_decode(bytes, out),
            Wire::Q8 => q8_decode(bytes, out),
            // a finite scale and trits give finite values: anything else is malformed
            Wire::Ternary => ternary_decode(bytes, out).map(|()| true)?,
        })
    }

    /// Checks `n` encoded values: their length, their decoding and whether
    /// every value is finite. f32 is checked where it lies (the bytes are the
    /// values); the other wires are decoded into `decoded` (its first `n`).
    pub fn check_result(
        self,
        bytes: &[u8],
        n: usize,
        decoded: &mut Vec<f32>,
    ) -> Result<bool, Malformed> {
        if let Wire::F32 = self {
            if bytes.len() != n * 4 {
                return Err(Malformed::Length {
                    bytes: bytes.len(),
                    values: n,
                    wire: self,
                });
            }
            return Ok(f32_bytes_finite(bytes));
        }
        decoded.resize(n, 0.0);
        self.decode_checked(bytes, &mut decoded[..n])
    }

    /// What a receiver decodes from `encode(x)`, computed in place.
    pub fn round_trip(self, x: &mut [f32]) {
        match self {
            Wire::F32 => {}
            Wire::Bf16 => bf16_round_trip(x),
            Wire::Q8 => q8_round_trip(x),
            Wire::Ternary => ternary_round_trip(x),
        }
    }
}

/// Encoded bytes that do not decode.
#[derive(Debug, thiserror::Error)]
pub enum Malformed {
    #[error("{bytes} bytes for {values} {} values", wire.name())]
    Length {
        bytes: usize,
        values: usize,
        wire: Wire,
    },
    #[error("ternary block {block}: its scale is not a finite number")]
    Scale { block: usize },
    #[error("ternary block {block}: byte {byte} holds a trit code above 2")]
    Trit { block: usize, byte: u8 },
}

/// 1 when `x` is an Inf or a NaN (exponent all ones): branch-free, so the
/// loops that count it vectorise.
#[inline(always)]
pub(crate) fn nonfinite(x: f32) -> u32 {
    ((x.to_bits() & 0x7f80_0000) == 0x7f80_0000) as u32
}

// The codecs' loops, compiled for each vector width (see crate::simd).

crate::simd_fn! {
    /// Whether every little-endian f32 in `bytes` is finite.
    fn f32_bytes_finite(bytes: &[u8]) -> bool {
        let mut bad = 0u32;
        // SAFETY: any 4 bytes are a valid f32; the aligned middle is taken as such.
        if let ([], mid, []) = unsafe { bytes.align_to::<f32>() } {
            for &x in mid {
                bad |= nonfinite(x);
            }
        } else {
            for c in bytes.chunks_exact(4) {
                bad |= nonfinite(f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
            }
        }
        bad == 0
    }
}

crate::simd_fn! {
    /// Returns whether every value is finite.
    fn f32_decode(bytes: &[u8], out: &mut [f32]) -> bool {
        let mut bad = 0u32;
        // SAFETY: any 4 bytes are a valid f32; the aligned middle is taken as such.
        if let ([], mid, []) = unsafe { bytes.align_to::<f32>() } {
            // little-endian machine: the wire's byte order
            for (o, &x) in out.iter_mut().zip(mid) {
                *o = x;
                bad |= nonfinite(x);
            }
        } else {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                bad |= nonfinite(*o);
            }
        }
        bad == 0
    }
}

crate::simd_fn! {
    fn bf16_encode(x: &[f32], dst: &mut [u8]) {
        // SAFETY: any bytes are valid u16s; the aligned middle is taken as such.
        let (head, mid, tail) = unsafe { dst.align_to_mut::<u16>() };
        if head.is_empty() && tail.is_empty() {
            // little-endian machine: a u16 store is the wire's byte order
            for (o, &v) in mid.iter_mut().zip(x) {
                *o = bf16_bits(v);
            }
            return;
        }
        for (o, &v) in dst.chunks_exact_mut(2).zip(x) {
            o.copy_from_slice(&bf16_bits(v).to_le_bytes());
        }
    }
}

crate::simd_fn! {
    /// Returns whether every value is finite.
    fn bf16_decode(bytes: &[u8], out: &mut [f32]) -> bool {
        let mut bad = 0u32;
        // SAFETY: any bytes are valid u16s; the aligned middle is taken as such.
        if let ([], mid, []) = unsafe { bytes.align_to::<u16>() } {
            for (o, &b) in out.iter_mut().zip(mid) {
                *o = f32::from_bits((b as u32) << 16);
                bad |= (b & 0x7f80 == 0x7f80) as u32;
            }
        } else {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16);
                bad |= nonfinite(*o);
            }
        }
        bad == 0
    }
}

crate::simd_fn! {
    fn bf16_round_trip(x: &mut [f32]) {
        x.iter_mut()
            .for_each(|v| *v = f32::from_bits((bf16_bits(*v) as u32) << 16));
    }
}

crate::simd_fn! {
    fn q8_encode(x: &[f32], dst: &mut [u8]) {
        for (block, o) in x.chunks(Q8_BLOCK).zip(dst.chunks_mut(Q8_BLOCK + 4)) {
            let scale = q8_scale(block);
            let inv = q8_inverse(scale);
            o[..4].copy_from_slice(&scale.to_le_bytes());
            for (q, &v) in o[4..].iter_mut().zip(block) {
                *q = q8_value(v, inv) as u8;
            }
        }
    }
}

crate::simd_fn! {
    /// Returns whether every value is finite (a hostile scale can overflow).
    fn q8_decode(bytes: &[u8], out: &mut [f32]) -> bool {
        let mut bad = 0u32;
        for (block, o) in bytes.chunks(Q8_BLOCK + 4).zip(out.chunks_mut(Q8_BLOCK)) {
            let scale = f32::from_le_bytes(block[..4].try_into().unwrap());
            for (v, &q) in o.iter_mut().zip(&block[4..]) {
                *v = (q as i8) as f32 * scale;
                bad |= nonfinite(*v);
            }
        }
        bad == 0
    }
}

crate::simd_fn! {
    fn q8_round_trip(x: &mut [f32]) {
        for block in x.chunks_mut(Q8_BLOCK) {
            let scale = q8_scale(block);
            let inv = q8_inverse(scale);
            block
                .iter_mut()
                .for_each(|v| *v = q8_value(*v, inv) as f32 * scale);
        }
    }
}

/// A ternary block's quantiser: each value becomes round(x/s) ∈ {−1, 0, +1}
/// (ties to even) times s, with s (as the bf16 the wire carries) the block's
/// least-squares scale: the mean |x| of the values that round to ±s, found by
/// a few Lloyd iterations from the largest |x|. Against s = max |x| this
/// halves the squared error of a Gaussian block, which matters when a run has
/// only a few rounds for error feedback to make up the rest. Every value that
/// rounds to ±s has |x| > s/2, so no value's error exceeds its own size and
/// error feedback's residual stays bounded (a mean of all magnitudes as s
/// clips the large values and lets it grow). Quantising what was decoded
/// gives the same bytes (the owner re-encodes its stored result): decoded
/// values are 0 or ±s, whose mean is s.
struct TernaryBlock {
    scale_bits: u16,
}

/// Lloyd iterations for a ternary block's scale (the scale changes by less
/// than bf16's resolution after about three on Gaussian blocks).
const TERNARY_LLOYD_STEPS: usize = 4;

impl TernaryBlock {
    fn of(block: &[f32]) -> Self {
        // a NaN stays a NaN scale: receivers refuse such a chunk
        if block.iter().any(|x| x.is_nan()) {
            return TernaryBlock {
                scale_bits: bf16_bits(f32::NAN),
            };
        }
        let mut s = block.iter().fold(0f32, |m, x| m.max(x.abs()));
        for _ in 0..TERNARY_LLOYD_STEPS {
            if !(s.is_finite() && s > 0.0) {
                break;
            }
            let (sum, n) = block
                .iter()
                .map(|x| x.abs())
                .filter(|&a| a > s / 2.0)
                .fold((0f64, 0u32), |(sum, n), a| (sum + a as f64, n + 1));
            s = (sum / n.max(1) as f64) as f32;
        }
        TernaryBlock {
            scale_bits: bf16_bits(s),
        }
    }

    fn scale(&self) -> f32 {
        f32::from_bits((self.scale_bits as u32) << 16)
    }

    /// t + 1 for x.
    #[inline(always)]
    fn code(&self, x: f32) -> u8 {
        let s = self.scale();
        if s.is_nan() || s <= 0.0 {
            return 1;
        }
        let t = (x / s).round_ties_even();
        if t >= 1.0 {
            2
        } else if t <= -1.0 {
            0
        } else {
            1
        }
    }
}

fn ternary_encode(x: &[f32], dst: &mut [u8]) {
    let per_block = 2 + TERNARY_BLOCK.div_ceil(5);
    for (block, o) in x.chunks(TERNARY_BLOCK).zip(dst.chunks_mut(per_block)) {
        let q = TernaryBlock::of(block);
        o[..2].copy_from_slice(&q.scale_bits.to_le_bytes());
        for (byte, five) in o[2..].iter_mut().zip(block.chunks(5)) {
            *byte = five.iter().rev().fold(0u8, |acc, &v| acc * 3 + q.code(v));
        }
    }
}

fn ternary_decode(bytes: &[u8], out: &mut [f32]) -> Result<(), Malformed> {
    let per_block = 2 + TERNARY_BLOCK.div_ceil(5);
    let blocks = bytes.chunks(per_block).zip(out.chunks_mut(TERNARY_BLOCK));
    for (b, (block, o)) in blocks.enumerate() {
        let s = f32::from_bits((u16::from_le_bytes([block[0], block[1]]) as u32) << 16);
        if !s.is_finite() {
            return Err(Malformed::Scale { block: b });
        }
        for (&byte, five) in block[2..].iter().zip(o.chunks_mut(5)) {
            // the digits beyond this byte's values must be 0 too
            if u32::from(byte) >= 3u32.pow(five.len() as u32) {
                return Err(Malformed::Trit { block: b, byte });
            }
            let mut code = byte;
            for v in five.iter_mut() {
                *v = (f32::from(code % 3) - 1.0) * s;
                code /= 3;
            }
        }
    }
    Ok(())
}

/// What a receiver decodes from the ternary encoding of `x`, in place.
fn ternary_round_trip(x: &mut [f32]) {
    for block in x.chunks_mut(TERNARY_BLOCK) {
        let q = TernaryBlock::of(block);
        let s = q.scale();
        for v in block.iter_mut() {
            *v = (f32::from(q.code(*v)) - 1.0) * s;
        }
    }
}

/// f32 → bf16 bits, rounding to nearest even; NaN stays a (quiet) NaN.
/// Branch-free apart from the NaN select, so it vectorises.
#[inline(always)]
fn bf16_bits(v: f32) -> u16 {
    let b = v.to_bits();
    let rounded = b.wrapping_add(0x7fff + ((b >> 16) & 1));
    if v.is_nan() {
        ((b >> 16) | 0x0040) as u16
    } else {
        (rounded >> 16) as u16
    }
}

#[inline(always)]
fn q8_scale(block: &[f32]) -> f32 {
    // f32::max ignores NaN: look for non-finite values separately
    let m = block.iter().fold(0f32, |m, v| m.max(v.abs()));
    if block.iter().fold(0u32, |b, &v| b | nonfinite(v)) != 0 {
        return f32::NAN; // a non-finite block stays detectable after decoding
    }
    if m > 0.0 {
        m / 127.0
    } else if m == 0.0 {
        0.0
    } else {
        f32::NAN // a non-finite block stays detectable after decoding
    }
}

/// 1/scale, or 0 for an all-zero or non-finite block (whose values encode as 0).
#[inline(always)]
fn q8_inverse(scale: f32) -> f32 {
    if scale == 0.0 || !scale.is_finite() {
        0.0
    } else {
        1.0 / scale
    }
}

/// round-half-even(v · inv) clamped to ±127, NaN (a non-finite block) as 0.
/// Adding 1.5·2²³ rounds exactly for |x| < 2²² without a libm call and leaves
/// the integer, two's complement, in the low mantissa bits: no saturating
/// float-to-int conversion, so the loop vectorises.
#[inline(always)]
fn q8_value(v: f32, inv: f32) -> i8 {
    const MAGIC: f32 = 12_582_912.0;
    let x = (v * inv).clamp(-127.0, 127.0);
    let x = if x.is_nan() { 0.0 } else { x };
    (x + MAGIC).to_bits() as u8 as i8
}

/// The bytes of an f32 slice (little-endian machine).
pub fn f32_bytes(x: &[f32]) -> &[u8] {
    // SAFETY: f32 has no padding and every byte pattern is a valid u8.
    unsafe { std::slice::from_raw_parts(x.as_ptr() as *const u8, x.len() * 4) }
}

/// Message kinds.
pub mod kind {
    pub const SYNC: u8 = 1;
    pub const DATA: u8 = 2;
    pub const ABORT: u8 = 3;
    pub const DONE: u8 = 4;
}

/// A received, authenticated frame.
#[derive(Debug)]
pub struct Frame {
    pub kind: u8,
    pub attempt: u32,
    pub payload: Vec<u8>,
    /// blake3 of the payload (zero in transport-only mode).
    pub hash: [u8; 32],
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes is over the {MAX_FRAME}-byte cap")]
    TooLarge(usize),
    #[error("frame fails its MAC (altered, replayed or out of order)")]
    BadMac,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// One direction of an authenticated connection.
pub struct MacKey {
    key: [u8; 32],
    seq: u64,
    /// Floor mode (benchmarks only): no hashing, no MAC check.
    insecure: bool,
}

impl MacKey {
    pub fn new(key: [u8; 32]) -> Self {
        Self {
            key,
            seq: 0,
            insecure: false,
        }
    }

    /// Turns hashing and MAC checks off: the transport floor of the benchmark.
    pub fn set_insecure(&mut self) {
        self.insecure = true;
    }

    fn payload_hash(&self, parts: &[&[u8]]) -> [u8; 32] {
        if self.insecure {
            return [0; 32];
        }
        let mut h = blake3::Hasher::new();
        for p in parts {
            h.update(p);
        }
        *h.finalize().as_bytes()
    }

    fn tag(&self, header: &[u8], payload_hash: &[u8; 32]) -> [u8; MAC_LEN] {
        let mut out = [0u8; MAC_LEN];
        if self.insecure {
            return out;
        }
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(&self.seq.to_le_bytes());
        h.update(header);
        h.update(payload_hash);
        out.copy_from_slice(&h.finalize().as_bytes()[..MAC_LEN]);
        out
    }

    /// Writes one frame whose payload is the concatenation of `parts`
    /// (gathered with one vectored write; no copy of the data). Returns the
    /// bytes written and the payload's blake3.
    pub fn write_frame(
        &mut self,
        w: &mut impl Write,
        kind: u8,
        attempt: u32,
        parts: &[&[u8]],
    ) -> io::Result<(u64, [u8; 32])> {
        let hash = self.payload_hash(parts);
        self.write_frame_hashed(w, kind, attempt, parts, hash)
    }

    /// As [`write_frame`](Self::write_frame) with the payload's blake3 already
    /// known (one result chunk goes to every member: it is hashed once).
    pub fn write_frame_hashed(
        &mut self,
        w: &mut impl Write,
        kind: u8,
        attempt: u32,
        parts: &[&[u8]],
        hash: [u8; 32],
    ) -> io::Result<(u64, [u8; 32])> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        assert!(len <= MAX_FRAME, "frame over the cap");
        let mut header = [0u8; HEADER];
        header[..4].copy_from_slice(&(len as u32).to_le_bytes());
        header[4] = kind;
        header[5..9].copy_from_slice(&attempt.to_le_bytes());
        let mac = self.tag(&header, &hash);
        self.seq += 1;
        let mut slices: Vec<IoSlice> = Vec::with_capacity(parts.len() + 2);
        slices.push(IoSlice::new(&header));
        slices.extend(parts.iter().map(|p| IoSlice::new(p)));
        slices.push(IoSlice::new(&mac));
        write_all_vectored(w, &mut slices)?;
        Ok(((HEADER + len + MAC_LEN) as u64, hash))
    }

    /// Reads and authenticates one frame.
    pub fn read_frame(&mut self, r: &mut impl Read) -> Result<Frame, FrameError> {
        self.read_frame_into(r, Vec::new())
    }

    /// As [`read_frame`](Self::read_frame), reusing `buf`'s allocation for the payload.
    pub fn read_frame_into(
        &mut self,
        r: &mut impl Read,
        mut payload: Vec<u8>,
    ) -> Result<Frame, FrameError> {
        let mut header = [0u8; HEADER];
        r.read_exact(&mut header)?;
        let len = u32::from_le_bytes(header[..4].try_into().unwrap()) as usize;
        if len > MAX_FRAME {
            return Err(FrameError::TooLarge(len));
        }
        // read into the buffer's spare capacity: no zero-fill of 2 MiB per frame
        payload.clear();
        payload.reserve(len);
        r.take(len as u64).read_to_end(&mut payload)?;
        if payload.len() != len {
            return Err(FrameError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "frame ended early",
            )));
        }
        let mut mac = [0u8; MAC_LEN];
        r.read_exact(&mut mac)?;
        let hash = self.payload_hash(&[&payload]);
        let want = self.tag(&header, &hash);
        // constant-time comparison
        if want
            .iter()
            .zip(mac.iter())
            .fold(0u8, |a, (x, y)| a | (x ^ y))
            != 0
        {
            return Err(FrameError::BadMac);
        }
        self.seq += 1;
        Ok(Frame {
            kind: header[4],
            attempt: u32::from_le_bytes(header[5..9].try_into().unwrap()),
            payload,
            hash,
        })
    }
}

fn write_all_vectored(w: &mut impl Write, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
    while !bufs.is_empty() {
        match w.write_vectored(bufs) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "connection closed",
                ))
            }
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Pre-authentication frames of the handshake: `[u32 len][bytes]`, at most 4 KiB.
pub const MAX_HELLO: usize = 4096;

pub fn write_plain(w: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    w.write_all(&(bytes.len() as u32).to_le_bytes())?;
    w.write_all(bytes)?;
    w.flush()
}

pub fn read_plain(r: &mut impl Read) -> Result<Vec<u8>, FrameError> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_HELLO {
        return Err(FrameError::TooLarge(len));
    }
    let mut b = vec![0u8; len];
    r.read_exact(&mut b)?;
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ternary_packs_five_trits_a_byte_and_refuses_bad_codes_and_scales() {
        assert_eq!(Wire::Ternary.encoded_len(64), 15);
        assert_eq!(Wire::Ternary.encoded_len(64 * 10 + 7), 150 + 2 + 2);
        let x: Vec<f32> = (0..64).map(|i| [3.0, -3.0, 0.1, -0.2][i % 4]).collect();
        let mut enc = Vec::new();
        Wire::Ternary.encode(&x, &mut enc);
        let mut dec = vec![0f32; 64];
        Wire::Ternary.decode(&enc, &mut dec).unwrap();
        assert_eq!(&dec[..4], &[3.0, -3.0, 0.0, 0.0]);
        // the same bytes again from what was decoded (owners re-encode their result)
        let mut again = Vec::new();
        Wire::Ternary.encode(&dec, &mut again);
        assert_eq!(again, enc);
        // a byte of five values above 3^5 - 1, or of the last four above 3^4 - 1
        let mut bad = enc.clone();
        bad[2] = 243;
        assert!(matches!(
            Wire::Ternary.decode(&bad, &mut dec),
            Err(Malformed::Trit {
                block: 0,
                byte: 243
            })
        ));
        let mut bad = enc.clone();
        bad[14] = 81;
        assert!(Wire::Ternary.decode(&bad, &mut dec).is_err());
        for scale in [0x7f80u16, 0xff80, 0x7fc0] {
            let mut bad = enc.clone();
            bad[..2].copy_from_slice(&scale.to_le_bytes());
            assert!(matches!(
                Wire::Ternary.decode(&bad, &mut dec),
                Err(Malformed::Scale { block: 0 })
            ));
        }
    }

    /// Error feedback: what quantisation loses is added to the next round's
    /// values, so the mean of what was sent over many rounds tends to the
    /// true value, however coarse one round is.
    #[test]
    fn ternary_with_error_feedback_converges_to_the_mean() {
        let x: Vec<f32> = (0..640)
            .map(|i| ((i as f32) * 0.61).sin() * (1 + i % 5) as f32)
            .collect();
        let mut residual = vec![0f32; x.len()];
        let mut sent_sum = vec![0f64; x.len()];
        let rounds = 400;
        for _ in 0..rounds {
            let mut v: Vec<f32> = x.iter().zip(&residual).map(|(a, r)| a + r).collect();
            let before = v.clone();
            Wire::Ternary.round_trip(&mut v);
            for k in 0..x.len() {
                residual[k] = before[k] - v[k];
                sent_sum[k] += v[k] as f64;
            }
        }
        let one_round_err: f64 = {
            let mut v = x.clone();
            Wire::Ternary.round_trip(&mut v);
            x.iter()
                .zip(&v)
                .map(|(a, b)| (a - b).abs() as f64)
                .fold(0.0, f64::max)
        };
        let worst = x
            .iter()
            .zip(&sent_sum)
            .map(|(a, s)| (s / rounds as f64 - *a as f64).abs())
            .fold(0.0, f64::max);
        assert!(
            one_round_err > 0.5,
            "one round alone is coarse: {one_round_err}"
        );
        // the mean is off by |residual| / rounds, and the residual stays
        // within a couple of the largest |x| (5 here)
        assert!(
            worst < 0.025,
            "the mean over {rounds} rounds is off by {worst}"
        );
    }

    /// The residual of error feedback does not grow: the largest |residual|
    /// of the last rounds is no larger than that of the first ones.
    #[test]
    fn ternary_error_feedback_residual_stays_bounded() {
        let x: Vec<f32> = (0..640)
            .map(|i| ((i as f32) * 0.61).sin() * (1 + i % 5) as f32 + 0.3)
            .collect();
        let mut residual = vec![0f32; x.len()];
        let mut largest = [0f32; 2];
        for round in 0..2000 {
            let mut v: Vec<f32> = x.iter().zip(&residual).map(|(a, r)| a + r).collect();
            let before = v.clone();
            Wire::Ternary.round_trip(&mut v);
            for k in 0..x.len() {
                residual[k] = before[k] - v[k];
                let half = &mut largest[round / 1000];
                *half = half.max(residual[k].abs());
            }
        }
        assert!(largest[0] < 2.5 * 5.3, "{largest:?}");
        assert!(largest[1] <= 1.05 * largest[0], "{largest:?}");
    }

    /// A received f32 result is checked where it lies: NaN and Inf anywhere
    /// (aligned or not) make it not finite, a wrong length is malformed, and
    /// the other wires decode into the scratch buffer as `decode_checked` does.
    #[test]
    fn check_result_finds_nonfinite_f32_in_place_and_wrong_lengths() {
        let vals: Vec<f32> = (0..1000).map(|i| i as f32 * 0.5 - 7.0).collect();
        let mut scratch = Vec::new();
        let bytes = f32_bytes(&vals).to_vec();
        assert!(Wire::F32.check_result(&bytes, 1000, &mut scratch).unwrap());
        assert!(scratch.is_empty(), "f32 is not copied");
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            for at in [0, 517, 999] {
                let mut v = vals.clone();
                v[at] = bad;
                let b = f32_bytes(&v).to_vec();
                assert!(!Wire::F32.check_result(&b, 1000, &mut scratch).unwrap());
                // the same bytes one off 4-byte alignment
                let mut shifted = vec![0u8; b.len() + 1];
                shifted[1..].copy_from_slice(&b);
                assert!(!Wire::F32
                    .check_result(&shifted[1..], 1000, &mut scratch)
                    .unwrap());
            }
        }
        assert!(matches!(
            Wire::F32.check_result(&bytes[..3996], 1000, &mut scratch),
            Err(Malformed::Length { .. })
        ));
        let mut enc = Vec::new();
        Wire::Bf16.encode(&vals, &mut enc);
        assert!(Wire::Bf16.check_result(&enc, 1000, &mut scratch).unwrap());
        let mut want = vec![0f32; 1000];
        Wire::Bf16.decode(&enc, &mut want).unwrap();
        assert_eq!(&scratch[..1000], &want[..]);
    }

    /// The least-squares scale: a Gaussian block loses under a quarter of
    /// its energy in one round (s = max |x| loses about half).
    #[test]
    fn ternary_scale_is_least_squares() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut uniform = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        // Box–Muller
        let x: Vec<f32> = (0..64 * 500)
            .map(|_| {
                let (a, b) = (uniform(), uniform());
                ((-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()) as f32
            })
            .collect();
        let mut q = x.clone();
        Wire::Ternary.round_trip(&mut q);
        let err: f64 = x
            .iter()
            .zip(&q)
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum();
        let energy: f64 = x.iter().map(|a| (*a as f64).powi(2)).sum();
        assert!(
            err / energy < 0.25,
            "relative squared error {}",
            err / energy
        );
    }

    #[test]
    fn codecs_round_trip() {
        let x: Vec<f32> = (0..1000)
            .map(|i| ((i as f32) * 0.37).sin() * 10f32.powi(i % 7 - 3))
            .collect();
        for wire in [Wire::F32, Wire::Bf16, Wire::Q8, Wire::Ternary] {
            let mut enc = Vec::new();
            wire.encode(&x, &mut enc);
            assert_eq!(enc.len(), wire.encoded_len(x.len()));
            let mut dec = vec![0f32; x.len()];
            wire.decode(&enc, &mut dec).unwrap();
            let mut rt = x.clone();
            wire.round_trip(&mut rt);
            assert_eq!(dec, rt, "{wire:?}: decode(encode(x)) == round_trip(x)");
            // encoding what was decoded gives the same bytes (owners re-encode from their output)
            let mut again = Vec::new();
            wire.encode(&dec, &mut again);
            assert_eq!(again, enc, "{wire:?}");
            for (a, b) in x.iter().zip(&dec) {
                let tol = match wire {
                    Wire::F32 => 0.0,
                    Wire::Bf16 => a.abs() / 128.0,
                    Wire::Q8 | Wire::Ternary => 1e9, // checked blockwise below
                };
                assert!((a - b).abs() <= tol, "{wire:?} {a} {b}");
            }
        }
        // the aligned (u16) and unaligned (byte) paths of the bf16 codec agree
        let mut bytes = vec![0u8; 2 * x.len() + 1];
        bf16_encode(&x, &mut bytes[..2 * x.len()]);
        let aligned = bytes[..2 * x.len()].to_vec();
        bf16_encode(&x, &mut bytes[1..]);
        assert_eq!(&bytes[1..], &aligned[..]);
        let (mut d1, mut d2) = (vec![0f32; x.len()], vec![0f32; x.len()]);
        bf16_decode(&bytes[1..], &mut d1);
        bf16_decode(&aligned, &mut d2);
        assert_eq!(d1, d2);
        let mut q = vec![0f32; 64];
        let block: Vec<f32> = (0..64).map(|i| i as f32 - 32.0).collect();
        let mut e = Vec::new();
        Wire::Q8.encode(&block, &mut e);
        Wire::Q8.decode(&e, &mut q).unwrap();
        assert!(block
            .iter()
            .zip(&q)
            .all(|(a, b)| (a - b).abs() <= 32.0 / 127.0 / 2.0 + 1e-6));
        let mut nan = vec![1.0f32; 64];
        nan[5] = f32::NAN;
        let mut e = Vec::new();
        Wire::Q8.encode(&nan, &mut e);
        Wire::Q8.decode(&e, &mut q).unwrap();
        assert!(
            q.iter().any(|v| !v.is_finite()),
            "a NaN block stays visible"
        );
    }

    #[test]
    fn q8_value_is_round_half_even_clamped() {
        for inv in [1.0f32, 0.37, 127.0 / 3.5, 0.0] {
            for i in -40_000..40_000 {
                let v = i as f32 * 0.01;
                let want = (v * inv).clamp(-127.0, 127.0);
                let r = want.round();
                // ties go to even
                let want = if (want - want.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
                    r - want.signum()
                } else {
                    r
                };
                assert_eq!(q8_value(v, inv), want as i8, "{v} * {inv}");
            }
        }
        assert_eq!(q8_value(f32::NAN, 1.0), 0);
        assert_eq!(q8_value(f32::INFINITY, 0.0), 0);
        assert_eq!(q8_value(1e30, 1.0), 127);
        assert_eq!(q8_value(-1e30, 1.0), -127);
    }

    #[test]
    fn bf16_rounding_matches_the_half_crate() {
        let mut x = 0x1234_5678u32;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let v = f32::from_bits(x);
            let ours = bf16_bits(v);
            let theirs = half::bf16::from_f32(v).to_bits();
            if v.is_nan() {
                assert!(f32::from_bits((ours as u32) << 16).is_nan());
            } else {
                assert_eq!(ours, theirs, "{v:e}");
            }
        }
    }

    #[test]
    fn frames_authenticate() {
        let key = [9u8; 32];
        let mut w = MacKey::new(key);
        let mut buf = Vec::new();
        w.write_frame(&mut buf, kind::DATA, 3, &[b"hello ", b"world"])
            .unwrap();
        w.write_frame(&mut buf, kind::DONE, 3, &[b"x"]).unwrap();
        let mut r = MacKey::new(key);
        let mut cur = &buf[..];
        let f = r.read_frame(&mut cur).unwrap();
        assert_eq!(
            (f.kind, f.attempt, &f.payload[..]),
            (kind::DATA, 3, &b"hello world"[..])
        );
        assert_eq!(f.hash, *blake3::hash(b"hello world").as_bytes());
        assert_eq!(r.read_frame(&mut cur).unwrap().payload, b"x");
        // a flipped bit, a replay, a wrong key
        let mut bad = buf.clone();
        bad[12] ^= 1;
        assert!(matches!(
            MacKey::new(key).read_frame(&mut &bad[..]),
            Err(FrameError::BadMac)
        ));
        let mut r2 = MacKey::new(key);
        let first_len = 9 + 11 + 16;
        r2.read_frame(&mut &buf[..first_len]).unwrap();
        assert!(
            matches!(
                r2.read_frame(&mut &buf[..first_len]),
                Err(FrameError::BadMac)
            ),
            "replay"
        );
        assert!(matches!(
            MacKey::new([1u8; 32]).read_frame(&mut &buf[..]),
            Err(FrameError::BadMac)
        ));
        // an oversized length is refused before allocating
        let mut huge = vec![0xff, 0xff, 0xff, 0x7f, 2, 0, 0, 0, 0];
        huge.extend_from_slice(&[0; 32]);
        assert!(matches!(
            MacKey::new(key).read_frame(&mut &huge[..]),
            Err(FrameError::TooLarge(_))
        ));
    }
}
