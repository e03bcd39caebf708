//! What a person at a terminal sees, and what a pipe sees. Each long command
//! draws a progress bar on stderr when stderr is a terminal (run here under
//! `script`, a real pseudo-terminal) and prints nothing but its summary when
//! it is not; `-q` silences both; `-v` and `DTRAIN_LOG` raise the log level.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::common::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `dtrain ARGS` as one shell word list.
fn command_line(args: &[&str]) -> String {
    std::iter::once(s(&bin()).to_string())
        .chain(args.iter().map(|a| a.to_string()))
        .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `script` running `line` on a pseudo-terminal; its stdout is the screen.
fn terminal(line: &str, env: &[(&str, &str)]) -> Command {
    let mut c = Command::new("script");
    c.args(["-q", "-e", "-c", line, "/dev/null"])
        .envs(env.iter().copied())
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Runs dtrain on a terminal: everything the terminal showed.
fn on_terminal(args: &[&str], env: &[(&str, &str)]) -> String {
    let o = terminal(&command_line(args), env).output().unwrap();
    let screen = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{args:?} failed on a terminal:\n{screen}"
    );
    screen
}

/// A bar labelled `what` was drawn: the label, the bar's bracket, an eta.
fn drew_bar(screen: &str, what: &str) -> bool {
    screen.contains(&format!("{what} [")) && screen.contains(" eta ")
}

fn assert_bar(screen: &str, what: &str) {
    assert!(
        drew_bar(screen, what),
        "no '{what}' bar on the terminal:\n{screen}"
    );
}

/// Ran in a pipe: succeeded, and stderr holds at most the summary line.
fn piped(args: &[&str], env: &[(&str, &str)], summary_lines: usize) -> std::process::Output {
    let o = dtrain_env(args, env);
    let err = stderr(&o);
    assert!(o.status.success(), "{args:?}: {err}");
    assert_eq!(
        err.lines().count(),
        summary_lines,
        "{args:?} in a pipe said:\n{err}"
    );
    assert!(
        !err.contains(" eta ") && !err.contains('\r'),
        "a bar in a pipe: {err}"
    );
    o
}

struct Pipeline {
    dir: tempfile::TempDir,
    corpus: PathBuf,
}

impl Pipeline {
    fn new() -> Pipeline {
        let dir = tempfile::tempdir().unwrap();
        let corpus = dir.path().join("corpus");
        copy_tree(&fixture("hub"), &corpus);
        Pipeline { dir, corpus }
    }

    /// A pipeline with a tiny model ("model") and a miner key ("m.key"), and that key's public half.
    fn with_model() -> (Pipeline, String) {
        let w = Pipeline::new();
        let init = dtrain(
            &["init", "--arch", "tiny", "--seed", "3", "-o", &w.p("model")],
            b"",
        );
        assert!(init.status.success(), "{}", stderr(&init));
        let key = dtrain(&["keygen", "-o", &w.p("m.key")], b"");
        assert!(key.status.success(), "{}", stderr(&key));
        let pubkey = String::from_utf8(key.stdout).unwrap().trim().to_string();
        (w, pubkey)
    }

    fn p(&self, f: &str) -> String {
        s(&self.dir.path().join(f)).to_string()
    }

    fn fetch_args(&self, out: &str) -> Vec<String> {
        [
            "fetch-shard",
            "--source",
            s(&self.corpus),
            "--uid",
            "0",
            "--epoch",
            "0",
            "--rows",
            "24",
            "--spec-out",
            &self.p("spec.json"),
            "-o",
            &self.p(out),
        ]
        .map(str::to_string)
        .to_vec()
    }

    fn train_args(&self, model: &str, out: &str, extra: &[&str]) -> Vec<String> {
        let mut a: Vec<String> = [
            "train-step",
            "--model",
            &self.p(model),
            "--tokens",
            &self.p("shard.bin"),
            "--seq-len",
            "32",
            "--micro-batch",
            "2",
            "--device",
            "cpu",
            "--sketch-k",
            "4",
            "--key",
            &self.p("m.key"),
            "--miner",
            "m",
            "-o",
            &self.p(&format!("{out}.safetensors")),
            "--receipt",
            &self.p(&format!("{out}.json")),
        ]
        .map(str::to_string)
        .to_vec();
        a.extend(extra.iter().map(|x| x.to_string()));
        a
    }
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn the_miners_pipeline_draws_bars_on_a_terminal_and_only_summaries_in_a_pipe() {
    let _machine = beside_others();
    let (w, pubkey) = Pipeline::with_model();

    assert_bar(
        &on_terminal(&strs(&w.fetch_args("rows-t.jsonl")), &[]),
        "rows",
    );
    piped(&strs(&w.fetch_args("rows.jsonl")), &[], 1);

    let tokenize = |out: &str| {
        [
            "tokenize",
            "--format",
            "jsonl",
            &w.p("rows.jsonl"),
            "-o",
            &w.p(out),
        ]
        .map(str::to_string)
    };
    assert_bar(
        &on_terminal(&strs(&tokenize("shard-t.bin")), &[]),
        "tokenize",
    );
    piped(&strs(&tokenize("shard.bin")), &[], 1);

    let screen = on_terminal(&strs(&w.train_args("model", "g-t", &[])), &[]);
    assert_bar(&screen, "micro-batches");
    assert!(screen.contains("tokens/s"), "{screen}");
    piped(&strs(&w.train_args("model", "g", &["--json"])), &[], 0);
    // -q: not even on a terminal
    let quiet = on_terminal(&strs(&w.train_args("model", "g-q", &["-q"])), &[]);
    assert!(!quiet.contains(" eta "), "{quiet}");

    let verify = [
        "verify",
        "--receipt",
        &w.p("g.json"),
        "--grad",
        &w.p("g.safetensors"),
        "--model",
        &w.p("model"),
        "--tokens",
        &w.p("shard.bin"),
        "--pubkey",
        &pubkey,
        "--spec",
        &w.p("spec.json"),
        "--source",
        s(&w.corpus),
        "--device",
        "cpu",
        "--json",
    ];
    assert_bar(&on_terminal(&verify, &[]), "recomputing micro-batches");
    let o = piped(&verify, &[], 0);
    let verdict: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(verdict["pass"], true, "{verdict}");

    let eval = [
        "eval",
        "--model",
        &w.p("model"),
        "--tokens",
        &w.p("shard.bin"),
        "--seq-len",
        "32",
        "--micro-batch",
        "2",
        "--device",
        "cpu",
    ];
    assert_bar(&on_terminal(&eval, &[]), "eval micro-batches");
    piped(&eval, &[], 0);
}

#[test]
fn push_and_pull_draw_byte_bars_on_a_terminal_only() {
    let _machine = beside_others();
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(&dir.path().join("hub"), &[]);
    let model = dir.path().join("model");
    assert!(dtrain(&["init", "--arch", "tiny", "-o", s(&model)], b"")
        .status
        .success());
    let home = dir.path().join("hf");
    let env = [
        ("HF_ENDPOINT", hub.url.as_str()),
        ("HF_HOME", s(&home)),
        ("HF_TOKEN", ""),
    ];
    let push = |tag: &str| {
        ["push", s(&model), "--repo", "o/m", "--tag", tag, "--create"].map(str::to_string)
    };
    assert_bar(&on_terminal(&strs(&push("1")), &env), "upload");
    piped(&strs(&push("2")), &env, 0);
    let pull = |tag: &str, out: &str| {
        [
            "pull",
            "--repo",
            "o/m",
            "--tag",
            tag,
            "-o",
            s(&dir.path().join(out)),
        ]
        .map(str::to_string)
    };
    assert_bar(&on_terminal(&strs(&pull("1", "a")), &env), "download");
    piped(&strs(&pull("2", "b")), &env, 0);
}

/// Two reduce peers on gradients from one model: one on a terminal, one in a pipe.
#[test]
fn reduce_draws_a_bar_per_phase_and_logs_its_members_when_asked() {
    let _machine = beside_others();
    let (w, _) = Pipeline::with_model();
    let rows = dtrain_env(&strs(&w.fetch_args("rows.jsonl")), &[]);
    assert!(rows.status.success());
    let t = dtrain(
        &[
            "tokenize",
            "--format",
            "jsonl",
            &w.p("rows.jsonl"),
            "-o",
            &w.p("shard.bin"),
        ],
        b"",
    );
    assert!(t.status.success());
    let mut toml = String::new();
    for (name, seqs) in [("a", "0-3"), ("b", "4-7")] {
        let o = dtrain(
            &strs(&w.train_args("model", name, &["--sequences", seqs])),
            b"",
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let k = dtrain(&["keygen", "-o", &w.p(&format!("{name}.key"))], b"");
        toml += &peer_entry(name, String::from_utf8_lossy(&k.stdout).trim());
    }
    std::fs::write(w.p("peers.toml"), toml).unwrap();
    let args = |me: &str, round: &str| -> Vec<String> {
        [
            "reduce",
            "--peers",
            &w.p("peers.toml"),
            "--me",
            me,
            "--key",
            &w.p(&format!("{me}.key")),
            "--round",
            round,
            "--in",
            &w.p(&format!("{me}.safetensors")),
            "--out",
            &w.p(&format!("{me}-{round}.out")),
            "--deadline",
            "30",
        ]
        .map(str::to_string)
        .to_vec()
    };
    // a on a terminal, b in a pipe with -v: its info lines, no bar
    let a = terminal(&command_line(&strs(&args("a", "r1"))), &[])
        .spawn()
        .unwrap();
    let mut b_args = args("b", "r1");
    b_args.push("-v".into());
    let b = spawn_piped(&strs(&b_args), &[]);
    let (screen, b_err) = (finish_ok(a), finish_ok(b));
    assert_bar(&screen, "phase 1: from 1 peer");
    assert_bar(&screen, "phase 2: from 1 owner");
    assert!(
        b_err.contains("INFO") && b_err.contains("attempt 0: members a b"),
        "{b_err}"
    );
    assert!(!b_err.contains(" eta "), "{b_err}");
    // DTRAIN_LOG picks modules and overrides -q; without either, a pipe gets nothing
    let a = spawn_piped(&strs(&args("a", "r2")), &[]);
    let mut b_args = args("b", "r2");
    b_args.push("-q".into());
    let b = spawn_piped(&strs(&b_args), &[("DTRAIN_LOG", "dtrain::reduce=info")]);
    let (a_err, b_err) = (finish_ok(a), finish_ok(b));
    assert_eq!(a_err, "", "a pipe without -v: {a_err}");
    assert!(b_err.contains("attempt 0: members a b"), "{b_err}");
}

fn spawn_piped(args: &[&str], env: &[(&str, &str)]) -> Child {
    Command::new(bin())
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for a child that must succeed: its stderr (or, for `script`, its screen).
fn finish_ok(c: Child) -> String {
    let o = c.wait_with_output().unwrap();
    let text = if o.stdout.is_empty() {
        &o.stderr
    } else {
        &o.stdout
    };
    let text = String::from_utf8_lossy(text).into_owned();
    assert!(o.status.success(), "{text}");
    text
}

#[test]
fn a_bad_log_filter_is_one_line_and_exit_2() {
    let _machine = beside_others();
    let o = dtrain_env(&["info"], &[("DTRAIN_LOG", "dtrain=[")]);
    assert_fails(&o, 2, "DTRAIN_LOG");
    // -v and -q together are a usage error
    let o = dtrain(&["-v", "-q", "info"], b"");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn retries_are_logged_with_v_and_the_hub_logs_requests_unless_q() {
    let _machine = beside_others();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("hub");
    copy_tree(&fixture("hub"), &root);
    let hub = Hub::start(&root, &["--fail-every", "2"]);
    let home = dir.path().join("hf");
    let env = [
        ("HF_ENDPOINT", hub.url.as_str()),
        ("HF_HOME", s(&home)),
        ("HF_TOKEN", ""),
    ];
    let fetch = |v: &str| {
        let mut a = vec![
            "fetch-shard",
            "--uid",
            "0",
            "--rows",
            "8",
            "-o",
            "/dev/null",
            "--json",
        ];
        if !v.is_empty() {
            a.push(v);
        }
        dtrain_env(&a, &env)
    };
    let o = fetch("-v");
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("retrying (1 of 5)") && err.contains("503"),
        "{err}"
    );
    let o = fetch("");
    assert!(o.status.success());
    assert!(!stderr(&o).contains("retrying"), "{}", stderr(&o));
    // the hub serves with an access log at info; -q leaves errors only
    let mut server = Command::new(bin())
        .args(["hub", "serve", "--addr", "127.0.0.1:0", "--root", s(&root)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = read_listening(&mut server);
    let o = dtrain_env(
        &[
            "pull",
            "--repo",
            "nope/none",
            "--tag",
            "1",
            "-o",
            s(&dir.path().join("x")),
        ],
        &[("HF_ENDPOINT", url.as_str())],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    server.kill().unwrap();
    let out = server.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("GET /api/models/nope/none/refs 404"), "{log}");
}

fn read_listening(c: &mut Child) -> String {
    use std::io::BufRead;
    let mut line = String::new();
    std::io::BufReader::new(c.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    line.trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string()
}
