//! The reduce frame decoder on arbitrary bytes: it must return frames or
//! errors, never panic, and never allocate beyond the frame cap.
#![no_main]
use dtrain::reduce::wire::{read_plain, MacKey, Wire};
use dtrain::reduce::{weighted_mean_of, Values};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut key = MacKey::new([7u8; 32]);
    let mut cur = data;
    while let Ok(f) = key.read_frame(&mut cur) {
        assert!(f.payload.len() <= dtrain::reduce::wire::MAX_FRAME);
    }
    let mut cur = data;
    while read_plain(&mut cur).is_ok() {}
    // the number codecs on whatever arrives as a chunk
    for w in [Wire::F32, Wire::Bf16, Wire::Q8] {
        for n in [0usize, 1, 63, 64, 65, data.len() / 2] {
            let mut out = vec![0f32; n];
            let _ = w.decode(data, &mut out);
        }
    }
    // an owner's sum over chunks that arrive in bf16 and q8 (lengths checked
    // as the owner checks them: the bytes must encode exactly n values)
    let n = data.len() / 2;
    let halves: Vec<u16> = data
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let mine = vec![1f32; n];
    let mut out = vec![0f32; n];
    weighted_mean_of(&[(1, Values::F32(&mine)), (2, Values::Bf16(&halves))], 3, &mut out);
    if let Some(n) = (1..=data.len() / 4 + 1)
        .map(|blocks| data.len().saturating_sub(4 * blocks))
        .find(|&n| n > 0 && Wire::Q8.encoded_len(n) == data.len())
    {
        let mine = vec![1f32; n];
        let mut out = vec![0f32; n];
        weighted_mean_of(&[(1, Values::F32(&mine)), (5, Values::Q8(data))], 6, &mut out);
    }
});
