//! The reduce frame decoder on arbitrary bytes: it must return frames or
//! errors, never panic, and never allocate beyond the frame cap.
#![no_main]
use dtrain::reduce::wire::{read_plain, MacKey, Wire};
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
});
