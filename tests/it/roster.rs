//! `dtrain roster`: miners' signed announcements, the validator's signed
//! roster, and the peers file everyone derives from it. Membership changes
//! from one epoch to the next with no file edited by hand; replayed,
//! tampered and foreign documents are skipped or refused.
use std::path::{Path, PathBuf};

use crate::common::*;

struct Members {
    dir: tempfile::TempDir,
}

impl Members {
    fn new(names: &[&str]) -> Members {
        let m = Members {
            dir: tempfile::tempdir().unwrap(),
        };
        for n in names {
            let o = dtrain(&["keygen", "-o", m.s(&format!("{n}.key"))], b"");
            assert!(o.status.success(), "{}", stderr(&o));
        }
        m
    }

    fn p(&self, f: &str) -> PathBuf {
        self.dir.path().join(f)
    }

    fn s(&self, f: &str) -> &str {
        Box::leak(self.p(f).to_str().unwrap().to_string().into_boxed_str())
    }

    fn pubkey(&self, name: &str) -> String {
        stdout(&dtrain(
            &["keygen", "--public", self.s(&format!("{name}.key"))],
            b"",
        ))
        .trim()
        .to_string()
    }

    /// `name` announces itself for `epoch` (an address, or `--relay`); the file's path.
    fn announce(&self, name: &str, epoch: u64, extra: &[&str]) -> String {
        let out = format!("{name}-{epoch}.json");
        let e = epoch.to_string();
        let mut args = vec![
            "roster",
            "announce",
            "--key",
            self.s(&format!("{name}.key")),
        ];
        args.extend(["--name", name, "--epoch", &e, "-o", self.s(&out)]);
        args.extend(extra);
        let o = dtrain(&args, b"");
        assert!(o.status.success(), "{}", stderr(&o));
        self.s(&out).to_string()
    }

    /// The validator decides `epoch`'s roster from `files`: (exit, stdout, stderr).
    fn decide(&self, epoch: u64, files: &[String], extra: &[&str]) -> (i32, String, String) {
        let e = epoch.to_string();
        let mut args = vec!["roster", "decide", "--key", self.s("v.key"), "--name", "v"];
        args.extend([
            "--addr",
            "127.0.0.1:7000",
            "--epoch",
            &e,
            "-o",
            self.s("roster.json"),
        ]);
        args.extend(extra);
        args.extend(files.iter().map(String::as_str));
        let o = dtrain(&args, b"");
        (o.status.code().unwrap(), stdout(&o), stderr(&o))
    }

    /// `roster show --peers-toml`: the members it names, or the exit code and stderr.
    fn show(&self, roster: &Path, pinned: &str, epoch: u64) -> Result<Vec<String>, (i32, String)> {
        let e = epoch.to_string();
        let out = self.p("peers.toml");
        let _ = std::fs::remove_file(&out);
        let o = dtrain(
            &[
                "roster",
                "show",
                roster.to_str().unwrap(),
                "--validator-pubkey",
                pinned,
            ]
            .into_iter()
            .chain(["--epoch", &e, "--peers-toml", out.to_str().unwrap()])
            .collect::<Vec<_>>(),
            b"",
        );
        if !o.status.success() {
            assert!(!out.exists(), "a refused roster wrote a peers file");
            return Err((o.status.code().unwrap(), stderr(&o)));
        }
        let o = dtrain(&["peers", out.to_str().unwrap()], b"");
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        Ok(v["peers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| match p["relay"].as_str() {
                Some(r) => format!("{}@relay:{r}", p["name"].as_str().unwrap()),
                None => p["name"].as_str().unwrap().to_string(),
            })
            .collect())
    }
}

#[test]
fn rosters_follow_announcements_and_refuse_what_is_not_the_validators() {
    let m = Members::new(&["v", "a", "b", "c", "d", "stranger"]);
    let v = m.pubkey("v");
    let relay = ["--relay", "127.0.0.1:7100"];
    // epoch 5: a and c reachable, b behind NAT; a replayed and a tampered announcement
    let a5 = m.announce("a", 5, &["--addr", "127.0.0.1:7001"]);
    let b5 = m.announce("b", 5, &["--relay"]);
    let c5 = m.announce("c", 5, &["--addr", "127.0.0.1:7003"]);
    let d4 = m.announce("d", 4, &["--addr", "127.0.0.1:7004"]);
    let tampered = m.s("tampered.json").to_string();
    let text = std::fs::read_to_string(m.p("c-5.json")).unwrap();
    std::fs::write(
        &tampered,
        text.replace("7003", "7666").replace("\"c\"", "\"e\""),
    )
    .unwrap();
    let garbage = m.s("garbage.json").to_string();
    std::fs::write(&garbage, "{\"body\": 3").unwrap();
    let (code, out, err) = m.decide(
        5,
        &[a5, b5.clone(), c5.clone(), d4, tampered, garbage],
        &relay,
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("3 members") || out.contains("4 members"),
        "{out}"
    );
    assert!(
        err.contains("epoch 4, not epoch 5"),
        "replay not skipped: {err}"
    );
    assert!(
        err.contains("tampered.json: not signed"),
        "tampered not skipped: {err}"
    );
    assert!(err.contains("garbage.json"), "{err}");
    let roster = m.p("roster.json");
    assert_eq!(
        m.show(&roster, &v, 5).unwrap(),
        ["a", "b@relay:127.0.0.1:7100", "c", "v"]
    );
    // everyone pins the validator's key and the epoch
    let (code, err) = m.show(&roster, &m.pubkey("a"), 5).unwrap_err();
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not signed by the pinned key"), "{err}");
    let (code, err) = m.show(&roster, &v, 6).unwrap_err();
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("epoch 5, not epoch 6"), "{err}");
    // a roster someone else decided and signed (a stranger running decide)
    let stranger = m.p("stranger-roster.json");
    let st = dtrain(
        &[
            "roster",
            "decide",
            "--key",
            m.s("stranger.key"),
            "--name",
            "v",
            "--addr",
            "127.0.0.1:7000",
        ]
        .into_iter()
        .chain(["--epoch", "5", "-o", stranger.to_str().unwrap(), &b5])
        .chain(relay)
        .collect::<Vec<_>>(),
        b"",
    );
    assert!(st.status.success(), "{}", stderr(&st));
    assert_eq!(m.show(&stranger, &v, 5).unwrap_err().0, 1);
    // a member list edited after signing
    let edited = m.p("edited.json");
    let text = std::fs::read_to_string(&roster).unwrap();
    std::fs::write(&edited, text.replace("127.0.0.1:7003", "127.0.0.1:7777")).unwrap();
    assert_eq!(m.show(&edited, &v, 5).unwrap_err().0, 1);
    std::fs::write(&edited, "not json").unwrap();
    let (code, err) = m.show(&edited, &v, 5).unwrap_err();
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    // epoch 6: c stops announcing (leaves), d joins; no file edited by hand
    let a6 = m.announce("a", 6, &["--addr", "127.0.0.1:7001"]);
    let b6 = m.announce("b", 6, &["--relay"]);
    let d6 = m.announce("d", 6, &["--addr", "127.0.0.1:7004"]);
    let (code, _, err) = m.decide(6, &[a6.clone(), b6.clone(), d6.clone(), c5], &relay);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        m.show(&roster, &v, 6).unwrap(),
        ["a", "b@relay:127.0.0.1:7100", "d", "v"]
    );
    // the rules: without a relay b cannot be reached; a registry pins keys to uids
    let registry = m.p("registry.toml");
    std::fs::write(
        &registry,
        format!(
            "[[miner]]\nuid = 3\npubkey = \"{}\"\n[[miner]]\nuid = 4\npubkey = \"{}\"\n",
            m.pubkey("a"),
            m.pubkey("b")
        ),
    )
    .unwrap();
    let (code, _, err) = m.decide(
        6,
        &[a6, b6, d6],
        &["--registry", registry.to_str().unwrap(), "--exclude", "a"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("b: it needs a relay and none is offered"),
        "{err}"
    );
    assert!(err.contains("d: its key is not in the registry"), "{err}");
    assert!(err.contains("a: excluded by the validator"), "{err}");
    assert_eq!(m.show(&roster, &v, 6).unwrap(), ["v"]);
    // bad input from the user: one line, exit 2, nothing written
    for (name, addr, why) in [
        ("a b", "x:1", "invalid name"),
        ("a", "nowhere", "not HOST:PORT"),
    ] {
        let args = [
            "roster",
            "announce",
            "--key",
            m.s("a.key"),
            "--name",
            name,
            "--addr",
            addr,
        ];
        let o = dtrain(
            &[&args[..], &["--epoch", "1", "-o", m.s("bad.json")]].concat(),
            b"",
        );
        assert_fails(&o, 2, why);
    }
    assert!(!m.p("bad.json").exists());
}

/// The validator loop leaves out of its rosters a miner whose last N
/// verdicts (DTRAIN_FAIL_STREAK, default 3), in the epochs it took part in,
/// all FAILed (scripts/lib.sh `fail_streak`, over epochs.jsonl).
#[test]
fn a_fail_streak_leaves_a_miner_out_of_the_next_rosters() {
    let dir = tempfile::tempdir().unwrap();
    let epochs = dir.path().join("epochs.jsonl");
    std::fs::write(
        &epochs,
        [
            r#"{"epoch":0,"passed":["a","b"],"rejected":["c"]}"#,
            r#"{"epoch":1,"passed":["a"],"rejected":["b","c"]}"#,
            r#"{"epoch":2,"no_update":true}"#,
            r#"{"epoch":3,"passed":["a"],"rejected":["c","b"]}"#,
            r#"{"epoch":4,"passed":["a","b"],"rejected":["d"]}"#,
        ]
        .join("\n"),
    )
    .unwrap();
    let streak = |n: &str| {
        let o = std::process::Command::new("bash")
            .args(["-c", "source scripts/lib.sh && fail_streak \"$1\"", "-"])
            .arg(&epochs)
            .env("DTRAIN_FAIL_STREAK", n)
            .current_dir(root())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
            .split_whitespace()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    // c failed its last 3 (epochs 0, 1, 3); b passed its last; d failed its only one
    assert_eq!(streak("3"), ["c"]);
    assert_eq!(streak("1"), ["c", "d"]);
    assert_eq!(streak("4"), Vec::<String>::new());
}
