//! `dtrain relay`: a peer that accepts no connections takes part in reduce
//! through a relay, bit-identical to the others; the relay only copies bytes
//! (a relay that garbles or reorders them fails that peer's links, never the
//! average); no one parks in another peer's name.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::cli_reduce::{finish, Swarm};
use crate::common::*;
use crate::netns_reduce::Net;

/// A `dtrain relay` process (killed on drop), optionally inside a namespace.
struct RelayProc(Child);

impl RelayProc {
    fn start(netns: Option<&str>, listen: &str) -> RelayProc {
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin());
                c
            }
            None => Command::new(bin()),
        };
        let mut child = cmd
            .args(["relay", "--listen", listen])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        err.read_line(&mut line).unwrap();
        assert!(line.contains("relay listening"), "{line}");
        std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
        RelayProc(child)
    }
}

impl Drop for RelayProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The swarm's peers file with `who` reached through `relay` (no address).
fn behind_relay(s: &Swarm, addrs: &[String], who: usize, relay: &str) {
    let mut toml = String::new();
    for (i, (name, pk)) in s.names.iter().zip(&s.pubs).enumerate() {
        toml += &format!("[[peer]]\nname = \"{name}\"\npubkey = \"{pk}\"\n");
        toml += &if i == who {
            format!("relay = \"{relay}\"\n\n")
        } else {
            format!("addr = \"{}\"\n\n", addrs[i])
        };
    }
    std::fs::write(s.path("peers.toml"), toml).unwrap();
}

fn loopback_addrs(n: usize) -> Vec<String> {
    (0..n)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect()
}

/// Every peer of the swarm finished; their outputs are identical and the
/// correctly rounded weighted mean of `members`.
fn exact_everywhere(
    s: &Swarm,
    outcomes: Vec<(Option<i32>, String, String)>,
    members: &[usize],
    weights: &[u64],
) {
    for (i, (code, _, err)) in outcomes.iter().enumerate() {
        if members.contains(&i) {
            assert_eq!(*code, Some(0), "peer {i}: {err}");
        }
    }
    let first = std::fs::read(s.out(members[0])).unwrap();
    for &i in members {
        assert_eq!(std::fs::read(s.out(i)).unwrap(), first, "peer {i} differs");
    }
    let got = dtrain::tensors::TensorFile::open(s.out(members[0])).unwrap();
    let want = s.expected(members, weights);
    for (k, (&g, &w)) in got.flat_f32().unwrap().iter().zip(&want).enumerate() {
        assert_eq!(
            g, w as f32,
            "element {k}: not the exact mean of {members:?}"
        );
    }
}

fn relayed_links(s: &Swarm, i: usize) -> Vec<String> {
    s.transcript(i)["body"]["traffic"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["relayed"] == true)
        .map(|t| t["peer"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_peer_behind_a_relay_is_bit_identical_and_its_links_are_marked() {
    let _machine = beside_others();
    let weights = [3, 5, 7];
    let s = Swarm::new(3, 200_003, &weights);
    let relay_addr = format!("127.0.0.1:{}", free_port());
    let _relay = RelayProc::start(None, &relay_addr);
    behind_relay(&s, &loopback_addrs(3), 2, &relay_addr);
    let kids: Vec<_> = (0..3)
        .map(|i| s.spawn(i, "relayed", &["--deadline", "30"]))
        .collect();
    let outcomes = kids
        .into_iter()
        .map(|k| finish(k, Duration::from_secs(40)))
        .collect();
    exact_everywhere(&s, outcomes, &[0, 1, 2], &weights);
    assert_eq!(relayed_links(&s, 0), ["p2"]);
    assert_eq!(relayed_links(&s, 2), ["p0", "p1"]);
}

/// A proxy in front of the relay that passes the first `clean` bytes of each
/// direction of every connection, then garbles (flips a bit) or reorders
/// (swaps two 512-byte blocks) what follows.
fn hostile_proxy(to: String, reorder: bool) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for a in l.incoming().flatten() {
            let Ok(b) = TcpStream::connect(&to) else {
                continue;
            };
            for (mut from, mut into) in [
                (a.try_clone().unwrap(), b.try_clone().unwrap()),
                (b.try_clone().unwrap(), a.try_clone().unwrap()),
            ] {
                std::thread::spawn(move || pump(&mut from, &mut into, reorder));
            }
        }
    });
    addr
}

fn pump(from: &mut TcpStream, into: &mut TcpStream, reorder: bool) {
    const CLEAN: usize = 4096;
    let (mut seen, mut buf) = (0usize, vec![0u8; 64 << 10]);
    let mut held: Option<Vec<u8>> = None;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut chunk = buf[..n].to_vec();
        if seen + n > CLEAN {
            if reorder && chunk.len() >= 512 && held.is_none() {
                held = Some(chunk.split_off(chunk.len() - 512));
            } else if !reorder {
                let k = CLEAN.saturating_sub(seen).min(n - 1);
                chunk[k] ^= 0x10;
            } else if let Some(h) = held.take() {
                chunk.splice(0..0, h.iter().copied().rev());
            }
        }
        seen += n;
        if into.write_all(&chunk).is_err() {
            break;
        }
    }
    let _ = into.shutdown(std::net::Shutdown::Write);
}

/// Four peers, p3 behind a relay that garbles or reorders bytes. Its links
/// fail (MACs); when one link breaks before the others, the membership rule
/// drops both of its ends (neither can be believed over the other), so two
/// or three peers finish. Whoever finishes holds the exact mean of the
/// members its transcript names, never with p3 among them.
#[test]
fn a_relay_that_garbles_or_reorders_fails_the_link_never_the_average() {
    let _machine = beside_others();
    let weights = [2, 9, 4, 5];
    for reorder in [false, true] {
        let s = Swarm::new(4, 300_007, &weights);
        let relay_addr = format!("127.0.0.1:{}", free_port());
        let _relay = RelayProc::start(None, &relay_addr);
        let proxy = hostile_proxy(relay_addr.clone(), reorder);
        behind_relay(&s, &loopback_addrs(4), 3, &proxy);
        let kids: Vec<_> = (0..4)
            .map(|i| s.spawn(i, "hostile-relay", &["--deadline", "20", "--chunk", "8192"]))
            .collect();
        let outcomes: Vec<_> = kids
            .into_iter()
            .map(|k| finish(k, Duration::from_secs(40)))
            .collect();
        assert_ne!(
            outcomes[3].0,
            Some(0),
            "the relayed peer finished: {}",
            outcomes[3].2
        );
        let finished: Vec<usize> = (0..3).filter(|&i| outcomes[i].0 == Some(0)).collect();
        assert!(finished.len() >= 2, "reorder {reorder}: {outcomes:?}");
        let members: Vec<usize> = s.transcript(finished[0])["body"]["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap()[1..].parse().unwrap())
            .collect();
        assert_eq!(members, finished, "reorder {reorder}");
        exact_everywhere(&s, outcomes, &finished, &weights);
    }
}

/// A stranger naming a peer's key cannot park in its name (the relay's
/// challenge), so a dialer looking for that peer finds nobody instead of the
/// stranger; the peer itself parks and is reached.
#[test]
fn no_one_parks_in_another_peers_name() {
    let _machine = beside_others();
    let relay_addr = format!("127.0.0.1:{}", free_port());
    let _relay = RelayProc::start(None, &relay_addr);
    let victim = dtrain::keys::Key::generate();
    let stranger = dtrain::keys::Key::generate();
    let line = |s: &mut TcpStream| {
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut l = String::new();
        r.read_line(&mut l).unwrap();
        l.trim().to_string()
    };
    let mut s = TcpStream::connect(&relay_addr).unwrap();
    writeln!(s, "DTRAIN-RELAY/1 LISTEN {}", victim.public().to_hex()).unwrap();
    let challenge = line(&mut s);
    let nonce = hex::decode(challenge.strip_prefix("CHALLENGE ").unwrap()).unwrap();
    let mut msg = b"dtrain relay listen\n".to_vec();
    msg.extend(nonce);
    writeln!(s, "{}", hex::encode(stranger.sign(&msg))).unwrap();
    assert_eq!(line(&mut s), "REFUSED");
    let dial = dtrain::relay::dial(&relay_addr, &victim.public());
    assert!(dial.is_err(), "a dialer was paired with the stranger");
    // the victim itself parks and is reached
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let parked = scope.spawn(|| dtrain::relay::park(&relay_addr, &victim, &stop));
        let mut dialer = loop {
            if let Ok(d) = dtrain::relay::dial(&relay_addr, &victim.public()) {
                break d;
            }
        };
        let mut parked = parked.join().unwrap().unwrap().unwrap();
        dialer.write_all(b"hello through the relay").unwrap();
        let mut got = [0u8; 23];
        parked.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello through the relay");
    });
    // an endless request line is cut at MAX_LINE bytes, not read until the
    // line deadline (LINE_TIME, 5 s); the relay serves on
    let mut g = TcpStream::connect(&relay_addr).unwrap();
    let t0 = std::time::Instant::now();
    let _ = g.write_all(&vec![b'x'; 100_000]);
    let mut rest = Vec::new();
    g.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert!(matches!(g.read_to_end(&mut rest), Ok(0) | Err(_)));
    assert!(
        t0.elapsed() < dtrain::relay::LINE_TIME / 2,
        "closed after {:?}: the line was read to its deadline",
        t0.elapsed()
    );
    assert!(dtrain::relay::dial(&relay_addr, &victim.public()).is_err());
}

fn can_firewall() -> bool {
    crate::netns_reduce::can_use_netns()
        && Command::new("iptables")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// Three namespaces on a bridge; p2's namespace drops every inbound TCP
/// connection (iptables: SYN → DROP), as a NAT or a container would. The
/// relay runs beside p0; p2 takes part through it.
#[test]
fn a_miner_that_accepts_no_connections_reduces_through_the_relay() {
    let _machine = beside_others();
    if !can_firewall() {
        eprintln!(
            "SKIPPED: needs root, iproute2 and iptables (scripts/setup.sh installs it as root)"
        );
        return;
    }
    let net = Net {
        prefix: format!("dr{}", std::process::id() % 100000),
        n: 3,
    };
    let up = Command::new(root().join("scripts/netns.sh"))
        .args(["up", &net.prefix, "3", "1000"])
        .status()
        .unwrap();
    assert!(up.success());
    let ns = |i: usize| format!("{}-{i}", net.prefix);
    let fw = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns(2),
            "iptables",
            "-A",
            "INPUT",
            "-p",
            "tcp",
            "--syn",
            "-j",
            "DROP",
        ])
        .status()
        .unwrap();
    assert!(fw.success());
    let weights = [1, 2, 3];
    let s = Swarm::new(3, 500_009, &weights);
    let addrs: Vec<String> = (0..3).map(|i| format!("10.213.0.{}:7000", i + 1)).collect();
    // first without the relay: p2's address is there, but nothing reaches it
    behind_relay(&s, &addrs, 9, "");
    let outcomes = run_in(&s, &ns, "direct");
    assert_ne!(
        outcomes[2].0,
        Some(0),
        "p2 was reachable: {}",
        outcomes[2].2
    );
    exact_everywhere(&s, outcomes, &[0, 1], &weights);
    // then through the relay
    let _relay = RelayProc::start(Some(&ns(0)), "10.213.0.1:7100");
    behind_relay(&s, &addrs, 2, "10.213.0.1:7100");
    let outcomes = run_in(&s, &ns, "relayed");
    exact_everywhere(&s, outcomes, &[0, 1, 2], &weights);
    assert_eq!(relayed_links(&s, 1), ["p2"]);
}

fn run_in(
    s: &Swarm,
    ns: &dyn Fn(usize) -> String,
    round: &str,
) -> Vec<(Option<i32>, String, String)> {
    let kids: Vec<_> = (0..3)
        .map(|i| {
            Command::new("ip")
                .args(["netns", "exec", &ns(i)])
                .arg(bin())
                .args(s.reduce_args(i, round))
                .args(["--deadline", "15"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    kids.into_iter()
        .map(|k| finish(k, Duration::from_secs(30)))
        .collect()
}
