//! Mutual authentication of a reduce connection.
//!
//! ```text
//! initiator → acceptor  Hello  {round, from, to, nonce_i, eph_i, weight, tokens, layout}
//! acceptor → initiator  Ack    {from, nonce_a, eph_a, weight, tokens, layout, sig_a(T‖"A")}
//! initiator → acceptor  Finish {sig_i(T‖"I")}
//! ```
//! T is the blake3 of everything above (both nonces, both ephemeral X25519
//! keys, the round id, names, weights, layouts). Each side signs T with its
//! ed25519 key from PEERS.toml, so a peer not in the file, a wrong key, a
//! replayed Hello (the other side's nonce is fresh) or another round's
//! handshake all fail. The session keys are derived from the X25519 shared
//! secret and T, one per direction, and key the frames' MACs.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};
use x25519_dalek::{PublicKey as XPublic, StaticSecret};

use super::peers::Peers;
use super::wire::{read_plain, write_plain, MacKey};
use crate::keys::Key;

pub const MAGIC: &[u8; 4] = b"DTRD";
/// 2: postcard messages (1 was bincode).
pub const VERSION: u16 = 2;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("handshake I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("handshake: {0}")]
    Frame(#[from] super::wire::FrameError),
    #[error("handshake: malformed message")]
    Malformed,
    #[error("handshake: {0}")]
    Refused(String),
}

#[derive(Serialize, Deserialize, Debug, Clone)]
struct Hello {
    magic: [u8; 4],
    version: u16,
    round: String,
    from: String,
    to: String,
    nonce: [u8; 32],
    eph: [u8; 32],
    weight: u64,
    tokens: u64,
    layout: [u8; 32],
}

#[derive(Serialize, Deserialize, Debug, Clone)]
struct Ack {
    from: String,
    nonce: [u8; 32],
    eph: [u8; 32],
    weight: u64,
    tokens: u64,
    layout: [u8; 32],
    sig: Vec<u8>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
struct Finish {
    sig: Vec<u8>,
}

/// A connection read and written under one deadline for the whole
/// handshake: a dialer that trickles a byte a second still loses its slot
/// when the deadline passes (a timeout per read would let it stay forever).
pub struct Deadline<'a> {
    stream: &'a std::net::TcpStream,
    until: std::time::Instant,
}

impl<'a> Deadline<'a> {
    pub fn new(stream: &'a std::net::TcpStream, within: std::time::Duration) -> Self {
        Self {
            stream,
            until: std::time::Instant::now() + within,
        }
    }

    fn left(&self) -> std::io::Result<std::time::Duration> {
        let left = self
            .until
            .saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "handshake deadline passed",
            ));
        }
        Ok(left)
    }
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.stream.set_read_timeout(Some(self.left()?))?;
        (&mut &*self.stream).read(buf)
    }
}

impl Write for Deadline<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.stream.set_write_timeout(Some(self.left()?))?;
        (&mut &*self.stream).write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What this side brings to a handshake.
pub struct Local<'a> {
    pub round: &'a str,
    pub me: usize,
    pub key: &'a Key,
    pub peers: &'a Peers,
    pub weight: u64,
    pub tokens: u64,
    pub layout: [u8; 32],
}

/// An authenticated peer: who, what it contributes, and the session keys.
pub struct Session {
    pub peer: usize,
    pub weight: u64,
    pub tokens: u64,
    pub layout: [u8; 32],
    /// Key for frames this side sends.
    pub send: MacKey,
    /// Key for frames this side receives.
    pub recv: MacKey,
}

/// Handshake messages are postcard (a stable, specified serde format); a
/// message is at most `MAX_HELLO` bytes, and one with bytes left over is malformed.
fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_allocvec(v).expect("small message")
}

fn decode<T: for<'de> Deserialize<'de>>(b: &[u8]) -> Result<T, Error> {
    if b.len() > super::wire::MAX_HELLO {
        return Err(Error::Malformed);
    }
    match postcard::take_from_bytes(b) {
        Ok((v, [])) => Ok(v),
        _ => Err(Error::Malformed),
    }
}

fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b).expect("OS randomness");
    b
}

fn transcript(h: &Hello, a: &Ack) -> [u8; 32] {
    let mut t = blake3::Hasher::new_derive_key("dtrain reduce handshake v2");
    t.update(&encode(h));
    let unsigned = Ack {
        sig: vec![],
        ..a.clone()
    };
    t.update(&encode(&unsigned));
    *t.finalize().as_bytes()
}

fn keys(secret: &StaticSecret, their: [u8; 32], t: &[u8; 32]) -> ([u8; 32], [u8; 32]) {
    let shared = secret.diffie_hellman(&XPublic::from(their));
    let mut ikm = shared.as_bytes().to_vec();
    ikm.extend_from_slice(t);
    (
        blake3::derive_key("dtrain reduce v1 initiator to acceptor", &ikm),
        blake3::derive_key("dtrain reduce v1 acceptor to initiator", &ikm),
    )
}

fn signed(t: &[u8; 32], role: u8) -> Vec<u8> {
    let mut m = t.to_vec();
    m.push(role);
    m
}

/// Runs the handshake as the side that connected to `to`.
pub fn initiate(s: &mut (impl Read + Write), local: &Local, to: usize) -> Result<Session, Error> {
    let secret = StaticSecret::from(random32());
    let hello = Hello {
        magic: *MAGIC,
        version: VERSION,
        round: local.round.into(),
        from: local.peers.list[local.me].name.clone(),
        to: local.peers.list[to].name.clone(),
        nonce: random32(),
        eph: XPublic::from(&secret).to_bytes(),
        weight: local.weight,
        tokens: local.tokens,
        layout: local.layout,
    };
    write_plain(s, &encode(&hello))?;
    let ack: Ack = decode(&read_plain(s)?)?;
    if ack.from != hello.to {
        return Err(Error::Refused(format!(
            "answered as '{}', expected '{}'",
            ack.from, hello.to
        )));
    }
    let t = transcript(&hello, &ack);
    local.peers.list[to]
        .pubkey
        .verify(&signed(&t, b'A'), &ack.sig)
        .map_err(|_| {
            Error::Refused(format!(
                "'{}' did not sign with its key from the peers file",
                hello.to
            ))
        })?;
    write_plain(
        s,
        &encode(&Finish {
            sig: local.key.sign(&signed(&t, b'I')).to_vec(),
        }),
    )?;
    let (i2a, a2i) = keys(&secret, ack.eph, &t);
    Ok(Session {
        peer: to,
        weight: ack.weight,
        tokens: ack.tokens,
        layout: ack.layout,
        send: MacKey::new(i2a),
        recv: MacKey::new(a2i),
    })
}

/// Runs the handshake as the side that accepted the connection.
pub fn accept(s: &mut (impl Read + Write), local: &Local) -> Result<Session, Error> {
    let hello: Hello = decode(&read_plain(s)?)?;
    if &hello.magic != MAGIC || hello.version != VERSION {
        return Err(Error::Refused(
            "not a dtrain reduce peer (or another protocol version)".into(),
        ));
    }
    if hello.round != local.round {
        return Err(Error::Refused(format!(
            "'{}' is in round '{}', this is round '{}'",
            hello.from, hello.round, local.round
        )));
    }
    if hello.to != local.peers.list[local.me].name {
        return Err(Error::Refused(format!("addressed to '{}'", hello.to)));
    }
    let from = local
        .peers
        .rank(&hello.from)
        .ok_or_else(|| Error::Refused(format!("'{}' is not in the peers file", hello.from)))?;
    if from == local.me {
        return Err(Error::Refused("a peer cannot connect to itself".into()));
    }
    let secret = StaticSecret::from(random32());
    let mut ack = Ack {
        from: hello.to.clone(),
        nonce: random32(),
        eph: XPublic::from(&secret).to_bytes(),
        weight: local.weight,
        tokens: local.tokens,
        layout: local.layout,
        sig: vec![],
    };
    let t = transcript(&hello, &ack);
    ack.sig = local.key.sign(&signed(&t, b'A')).to_vec();
    write_plain(s, &encode(&ack))?;
    let fin: Finish = decode(&read_plain(s)?)?;
    local.peers.list[from]
        .pubkey
        .verify(&signed(&t, b'I'), &fin.sig)
        .map_err(|_| {
            Error::Refused(format!(
                "'{}' did not sign with its key from the peers file",
                hello.from
            ))
        })?;
    let (i2a, a2i) = keys(&secret, hello.eph, &t);
    Ok(Session {
        peer: from,
        weight: hello.weight,
        tokens: hello.tokens,
        layout: hello.layout,
        send: MacKey::new(a2i),
        recv: MacKey::new(i2a),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn mutual_authentication_and_session_keys() {
        let seeds: Vec<[u8; 32]> = (0..2u8).map(|i| [i + 1; 32]).collect();
        let keys: Vec<Key> = seeds.iter().map(|s| Key::from_seed(*s)).collect();
        let mut t = String::new();
        for (i, k) in keys.iter().enumerate() {
            t += &format!(
                "[[peer]]\nname = \"p{i}\"\naddr = \"127.0.0.1:0\"\npubkey = \"{}\"\n",
                k.public().to_hex()
            );
        }
        let peers = Peers::parse(&t, "t").unwrap();
        let run = |round_a: &'static str, round_b: &'static str, seed_b: [u8; 32]| {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = l.local_addr().unwrap();
            let p2 = peers.clone();
            let th = std::thread::spawn(move || {
                let kb = [Key::from_seed([0; 32]), Key::from_seed(seed_b)];
                let mut s = TcpStream::connect(addr).unwrap();
                initiate(
                    &mut s,
                    &Local {
                        round: round_b,
                        me: 1,
                        key: &kb[1],
                        peers: &p2,
                        weight: 5,
                        tokens: 9,
                        layout: [2; 32],
                    },
                    0,
                )
            });
            let (mut s, _) = l.accept().unwrap();
            let ka = Key::from_seed(seeds[0]);
            let a = accept(
                &mut s,
                &Local {
                    round: round_a,
                    me: 0,
                    key: &ka,
                    peers: &peers,
                    weight: 3,
                    tokens: 4,
                    layout: [1; 32],
                },
            );
            // Close our end first: a refused initiator is still waiting for
            // an answer, and only EOF tells it there will be none.
            drop(s);
            (a, th.join().unwrap())
        };
        // good
        let (a, b) = run("r1", "r1", seeds[1]);
        let (mut a, mut b) = (a.unwrap(), b.unwrap());
        assert_eq!((a.peer, a.weight, a.tokens, a.layout), (1, 5, 9, [2; 32]));
        assert_eq!((b.peer, b.weight), (0, 3));
        let mut buf = Vec::new();
        b.send.write_frame(&mut buf, 2, 0, &[b"data"]).unwrap();
        assert_eq!(a.recv.read_frame(&mut &buf[..]).unwrap().payload, b"data");
        let mut buf = Vec::new();
        a.send.write_frame(&mut buf, 2, 0, &[b"back"]).unwrap();
        assert_eq!(b.recv.read_frame(&mut &buf[..]).unwrap().payload, b"back");
        // another round
        let (a, _) = run("r1", "r2", seeds[1]);
        assert!(a.err().unwrap().to_string().contains("round 'r2'"));
        // wrong key for the name
        let (a, _) = run("r1", "r1", [77; 32]);
        assert!(a
            .err()
            .unwrap()
            .to_string()
            .contains("did not sign with its key"));
    }
}
