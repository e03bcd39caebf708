//! The acceptor side of the reduce handshake fed arbitrary bytes: every
//! outcome is a refusal or (impossibly) a session, never a panic or a hang.
#![no_main]
use std::io::{Read, Write};
use std::sync::OnceLock;

use dtrain::keys::Key;
use dtrain::reduce::handshake::{accept, Local};
use dtrain::reduce::peers::Peers;
use libfuzzer_sys::fuzz_target;

struct Stream<'a> {
    input: &'a [u8],
}
impl Read for Stream<'_> {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        self.input.read(b)
    }
}
impl Write for Stream<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn setup() -> &'static (Key, Peers) {
    static S: OnceLock<(Key, Peers)> = OnceLock::new();
    S.get_or_init(|| {
        let a = Key::from_seed([1; 32]);
        let b = Key::from_seed([2; 32]);
        let toml = format!(
            "[[peer]]\nname=\"a\"\naddr=\"127.0.0.1:1\"\npubkey=\"{}\"\n[[peer]]\nname=\"b\"\naddr=\"127.0.0.1:2\"\npubkey=\"{}\"\n",
            a.public().to_hex(),
            b.public().to_hex()
        );
        (a, Peers::parse(&toml, "fuzz").unwrap())
    })
}

fuzz_target!(|data: &[u8]| {
    let (key, peers) = setup();
    let local = Local { round: "r", me: 0, key, peers, weight: 1, tokens: 1, layout: [0; 32] };
    let mut s = Stream { input: data };
    assert!(accept(&mut s, &local).is_err(), "no session without b's key");
});
