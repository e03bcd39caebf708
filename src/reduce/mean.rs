//! The arithmetic of a round: the weighted mean an owner computes for its
//! span, and centered clipping for the robust mode.
//!
//! Why f64 and rank order: the mean is summed in f64 in the members' rank
//! order, whatever order the bytes arrived in, and rounded once to f32; so the
//! result's bits do not depend on timing, and it is more exact than an f32
//! ring. bf16 and q8 contributions are decoded inside the sum (no decoded copy
//! is written and read back), and finiteness is checked in the same pass.

use super::wire::{self, Wire};

/// f32 values of a received chunk: in place when the wire is f32 and the
/// bytes are aligned, decoded into `scratch` otherwise.
pub(super) fn chunk_values<'a>(
    wire: Wire,
    body: &'a [u8],
    n: usize,
    scratch: &'a mut Vec<f32>,
) -> Result<&'a [f32], wire::Malformed> {
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
    /// `scratch`; always f32 when `as_f32`. Err: bytes that do not decode (a
    /// ternary chunk's scale or trits; lengths are checked by the caller).
    pub(super) fn of(
        wire: Wire,
        body: &'a [u8],
        n: usize,
        scratch: &'a mut Vec<f32>,
        as_f32: bool,
    ) -> Result<Self, wire::Malformed> {
        if !as_f32 {
            match wire {
                Wire::Q8 => return Ok(Values::Q8(body)),
                Wire::Bf16 => {
                    // SAFETY: any two bytes are a valid u16 (little-endian machine)
                    if let ([], mid, []) = unsafe { body.align_to::<u16>() } {
                        return Ok(Values::Bf16(mid));
                    }
                }
                Wire::F32 | Wire::Ternary => {}
            }
        }
        chunk_values(wire, body, n, scratch).map(Values::F32)
    }

    pub(super) fn all_finite(&self) -> bool {
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

/// `--clip`'s value is not `centered:TAU` with TAU > 0.
#[derive(Debug, thiserror::Error)]
#[error("--clip takes centered:TAU with TAU > 0, got '{0}'")]
pub struct BadClip(pub String);

/// Parses a clipping rule, `centered:TAU`: TAU is the RMS clip radius per element.
pub fn parse_clip(s: &str) -> Result<f64, BadClip> {
    match s
        .strip_prefix("centered:")
        .and_then(|t| t.parse::<f64>().ok())
    {
        Some(t) if t > 0.0 && t.is_finite() => Ok(t),
        _ => Err(BadClip(s.to_string())),
    }
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
mod tests {
    use super::*;

    /// Values whose f32 sum differs from the exact one in the last bits.
    fn awkward(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let x = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) as f32;
                (x / u32::MAX as f32 - 0.5) * 1e3 / (1 + i % 7) as f32
            })
            .collect()
    }

    #[test]
    fn the_mean_is_the_f64_sum_rounded_once() {
        let (a, b, c) = (awkward(10_000, 1), awkward(10_000, 2), awkward(10_000, 3));
        let mut out = vec![0f32; a.len()];
        weighted_mean(&[(3, &a), (1, &b), (5, &c)], 9, &mut out);
        for k in 0..a.len() {
            let exact = (3.0 * a[k] as f64 + b[k] as f64 + 5.0 * c[k] as f64) / 9.0;
            assert_eq!(out[k], exact as f32, "element {k}");
        }
    }

    #[test]
    fn wire_formats_enter_the_sum_as_their_decoded_values() {
        let x = awkward(3 * TILE + 100, 7);
        let mine = awkward(x.len(), 8);
        for wire in [Wire::Bf16, Wire::Q8] {
            let mut bytes = Vec::new();
            wire.encode(&x, &mut bytes);
            let mut decoded = vec![0f32; x.len()];
            wire.decode(&bytes, &mut decoded).unwrap();
            let mut scratch = Vec::new();
            let in_place = Values::of(wire, &bytes, x.len(), &mut scratch, false).unwrap();
            let (mut got, mut want) = (vec![0f32; x.len()], vec![0f32; x.len()]);
            assert!(weighted_mean_of(
                &[(2, Values::F32(&mine)), (3, in_place)],
                5,
                &mut got
            ));
            weighted_mean(&[(2, &mine), (3, &decoded)], 5, &mut want);
            assert_eq!(got, want, "{}", wire.name());
        }
    }

    #[test]
    fn a_nonfinite_value_is_reported_in_the_same_pass() {
        let mut a = awkward(5000, 1);
        let b = awkward(5000, 2);
        let mut out = vec![0f32; a.len()];
        fn views<'a>(a: &'a [f32], b: &'a [f32]) -> [(u64, Values<'a>); 2] {
            [(1, Values::F32(a)), (1, Values::F32(b))]
        }
        assert!(weighted_mean_of(&views(&a, &b), 2, &mut out));
        a[4321] = f32::INFINITY;
        assert!(!weighted_mean_of(&views(&a, &b), 2, &mut out));
        assert!(!all_finite(&a) && all_finite(&b));
    }

    #[test]
    fn centered_clip_with_a_wide_radius_is_the_mean_and_bounds_an_outlier() {
        let honest: Vec<Vec<f32>> = (0..4).map(|s| awkward(256, s)).collect();
        let mut views: Vec<(u64, &[f32])> = honest.iter().map(|v| (1, &v[..])).collect();
        let mut wide = vec![0f64; 256];
        centered_clip(&views, 1e12, &mut wide);
        let mut mean = vec![0f32; 256];
        weighted_mean(&views, 4, &mut mean);
        for (w, m) in wide.iter().zip(&mean) {
            assert!((*w as f32 - m).abs() <= 1e-3 * m.abs().max(1.0));
        }
        // one huge contribution moves a clipped mean by at most tau·√n / Σw per round
        let huge = vec![1e9f32; 256];
        views.push((1, &huge));
        let mut clipped = vec![0f64; 256];
        centered_clip(&views, 1.0, &mut clipped);
        let shift: f64 = clipped
            .iter()
            .zip(&wide)
            .map(|(c, w)| (c - w).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!(shift < 1e4, "an outlier moved the aggregate by {shift}");
    }
}
