//! What miners and peers publish, parsed and checked from arbitrary bytes:
//! receipts, data specs, transcripts and peers files. Each is a clean error or
//! a value; checking a value (signatures, signer against a peers file, row
//! counts) never panics.
#![no_main]
use std::sync::OnceLock;

use dtrain::data::DataSpec;
use dtrain::keys::Key;
use dtrain::receipt::Receipt;
use dtrain::reduce::peers::Peers;
use dtrain::reduce::transcript::{trusted, Transcript};
use libfuzzer_sys::fuzz_target;

fn peers() -> &'static Peers {
    static P: OnceLock<Peers> = OnceLock::new();
    P.get_or_init(|| {
        let toml = format!(
            "[[peer]]\nname=\"a\"\naddr=\"127.0.0.1:1\"\npubkey=\"{}\"\n",
            Key::from_seed([1; 32]).public().to_hex()
        );
        Peers::parse(&toml, "fuzz").unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    match which % 4 {
        0 => {
            if let Ok(r) = Receipt::from_json(&text) {
                let _ = r.check_signature(None);
                let _ = r.sequences.len();
            }
        }
        1 => {
            if let Ok(s) = DataSpec::parse(&text, "fuzz") {
                let _ = s.rows.len();
            }
        }
        2 => {
            if let Ok(t) = serde_json::from_str::<Transcript>(&text) {
                let _ = trusted(std::slice::from_ref(&t), Some(peers()));
            }
        }
        _ => {
            let _ = Peers::parse(&text, "fuzz");
        }
    }
});
