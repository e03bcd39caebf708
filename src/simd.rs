//! Run-time choice of vector width for the few hot loops over whole gradients.
//!
//! dtrain is built for baseline x86-64 (SSE2) so that one binary runs on every
//! machine of a swarm, but a reduce, a verify or an encode spends most of its
//! user time in a handful of loops over hundreds of megabytes. [`simd_fn!`](crate::simd_fn)
//! compiles such a loop three times, for AVX-512, for AVX2 and for the
//! baseline, and picks the widest the CPU has when it is called.
//!
//! The choice never changes a result: Rust does not reassociate or contract
//! floating-point arithmetic (no fast-math, no implicit FMA), so every version
//! computes the same bits, and peers on different CPUs still agree on a
//! round's average byte for byte (tested below).

/// The widest vector extension this CPU offers (2: AVX-512, 1: AVX2, 0: the
/// baseline; `DTRAIN_NO_SIMD` set forces the baseline).
#[inline]
pub fn level() -> u8 {
    #[cfg(test)]
    if tests::BASELINE.with(|b| b.get()) {
        return 0;
    }
    static LEVEL: std::sync::OnceLock<u8> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(detect)
}

/// [`level`] in words, for `dtrain info`.
pub fn name() -> &'static str {
    ["baseline (SSE2)", "avx2", "avx512"][level() as usize]
}

fn detect() -> u8 {
    if std::env::var_os("DTRAIN_NO_SIMD").is_some() {
        return 0;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
        {
            return 2;
        }
        if is_x86_feature_detected!("avx2") {
            return 1;
        }
    }
    0
}

/// Defines `fn NAME(args) -> R { body }` compiled for AVX-512, AVX2 and the
/// baseline, dispatched on [`level`] at each call. Arguments are passed by
/// value (references and slices included); no generics, no `self`.
#[macro_export]
macro_rules! simd_fn {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($a:ident: $t:ty),* $(,)?) $(-> $r:ty)? $body:block) => {
        $(#[$m])*
        $vis fn $name($($a: $t),*) $(-> $r)? {
            #[inline(always)]
            fn body($($a: $t),*) $(-> $r)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2")]
                unsafe fn wide($($a: $t),*) $(-> $r)? {
                    body($($a),*)
                }
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($a: $t),*) $(-> $r)? {
                    body($($a),*)
                }
                match $crate::simd::level() {
                    // SAFETY: level() checked that the CPU has these extensions.
                    2 => return unsafe { wide($($a),*) },
                    1 => return unsafe { avx2($($a),*) },
                    _ => {}
                }
            }
            body($($a),*)
        }
    };
}

#[cfg(test)]
mod tests {
    use crate::reduce::wire::Wire;
    use std::cell::Cell;

    thread_local! {
        /// Forces the baseline loops on this thread (to compare widths).
        pub(super) static BASELINE: Cell<bool> = const { Cell::new(false) };
    }
    use crate::reduce::{all_finite, weighted_mean, weighted_mean_of, Values};

    fn noise(n: usize, seed: u32) -> Vec<f32> {
        let mut x = seed | 1;
        (0..n)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                // mixed magnitudes, exact halves for bf16/q8 ties, and some specials
                match i % 997 {
                    0 => 0.0,
                    1 => -0.0,
                    2 => f32::MIN_POSITIVE / 3.0,
                    _ => f32::from_bits(x) % 1e3,
                }
            })
            .map(|v| if v.is_finite() { v } else { 1.5 })
            .collect()
    }

    /// bf16 and q8 contributions summed from their wire bytes give the bits
    /// that decoding them first and summing the f32 values gives.
    #[test]
    fn fused_decoding_sums_what_decoding_would() {
        // not a multiple of the tile or of a q8 block
        let n = 3 * 4096 + 101;
        let (a, b, c) = (noise(n, 4), noise(n, 5), noise(n, 6));
        for w in [Wire::Bf16, Wire::Q8] {
            let (mut eb, mut ec) = (Vec::new(), Vec::new());
            w.encode(&b, &mut eb);
            w.encode(&c, &mut ec);
            let (mut db, mut dc) = (vec![0f32; n], vec![0f32; n]);
            w.decode(&eb, &mut db).unwrap();
            w.decode(&ec, &mut dc).unwrap();
            let mut want = vec![0f32; n];
            weighted_mean(&[(2, &a[..]), (5, &db[..]), (1, &dc[..])], 8, &mut want);
            let wire_view = |e: &'_ [u8]| -> Vec<u16> {
                e.chunks_exact(2)
                    .map(|x| u16::from_le_bytes([x[0], x[1]]))
                    .collect()
            };
            let (ub, uc) = (wire_view(&eb), wire_view(&ec));
            let views = match w {
                Wire::Bf16 => [
                    (2, Values::F32(&a)),
                    (5, Values::Bf16(&ub)),
                    (1, Values::Bf16(&uc)),
                ],
                _ => [
                    (2, Values::F32(&a)),
                    (5, Values::Q8(&eb)),
                    (1, Values::Q8(&ec)),
                ],
            };
            for baseline in [false, true] {
                BASELINE.with(|x| x.set(baseline));
                let mut got = vec![1f32; n];
                weighted_mean_of(&views, 8, &mut got);
                BASELINE.with(|x| x.set(false));
                assert!(
                    got.iter()
                        .zip(&want)
                        .all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{w:?}: fused sum differs (baseline loops: {baseline})"
                );
            }
        }
    }

    /// Every vector width computes the same bits as the baseline loop.
    #[test]
    fn every_width_gives_the_same_bits() {
        let n = 100_003;
        let a = noise(n, 1);
        let b = noise(n, 2);
        let c = noise(n, 3);
        let run = || {
            let mut mean = vec![0f32; n];
            weighted_mean(&[(3, &a[..]), (1, &b[..]), (7, &c[..])], 11, &mut mean);
            let mut out = vec![mean.clone()];
            for w in [Wire::Bf16, Wire::Q8] {
                let mut enc = Vec::new();
                w.encode(&a, &mut enc);
                let mut dec = vec![0f32; n];
                w.decode(&enc, &mut dec).unwrap();
                let mut rt = a.clone();
                w.round_trip(&mut rt);
                out.extend([dec, rt]);
                out.push(enc.iter().map(|&x| x as f32).collect());
            }
            let mut inf = a.clone();
            inf[n - 1] = f32::INFINITY;
            out.push(vec![
                all_finite(&a) as u8 as f32,
                all_finite(&inf) as u8 as f32,
            ]);
            out
        };
        let wide = run();
        BASELINE.with(|b| b.set(true));
        let base = run();
        BASELINE.with(|b| b.set(false));
        assert_eq!(wide.len(), base.len());
        for (w, b) in wide.iter().zip(&base) {
            assert!(
                w.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
                "a vector width changed a result"
            );
        }
        assert_eq!(wide.last().unwrap(), &vec![1.0, 0.0]);
    }
}
