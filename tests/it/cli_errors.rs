//! A newcomer's mistakes: each gets one line that names the flag or file and
//! says what to do, and the exit code of its class (2: bad input, 3: network
//! after retries, 4: the round) — never a silent success.
use crate::common::*;

fn s(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

fn keygen(path: &std::path::Path) -> String {
    let o = dtrain(&["keygen", "-o", s(path)], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

#[test]
fn a_missing_input_is_exit_2_and_names_its_flag_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = |name: &str| d.join(name).to_str().unwrap().to_string();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            [
                "score",
                "--verdicts",
                "nope.jsonl",
                "--epoch",
                "0",
                "--state-out",
            ]
            .iter()
            .map(|x| x.to_string())
            .chain([out("s.json")])
            .collect(),
            "--verdicts nope.jsonl: No such file or directory",
        ),
        (
            vec![
                "tokenize".into(),
                "nope.txt".into(),
                "-o".into(),
                out("x.bin"),
            ],
            "input nope.txt: No such file or directory",
        ),
        (
            vec!["hash".into(), "nope".into()],
            "nope: No such file or directory",
        ),
    ];
    for (args, want) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = dtrain(&args, b"");
        assert_fails(&o, 2, want);
        assert!(!stderr(&o).contains("os error"), "{}", stderr(&o));
        assert_eq!(stderr(&o).matches("nope").count(), 1, "{}", stderr(&o));
    }
    // a receipt named by the caller, too
    std::fs::write(d.join("v.jsonl"), b"").unwrap();
    let o = dtrain(
        &[
            "score",
            "--verdicts",
            &out("v.jsonl"),
            "--receipt",
            "nope.json",
            "--state-out",
            &out("s.json"),
        ],
        b"",
    );
    assert_fails(&o, 2, "--receipt nope.json: No such file");
}

#[test]
fn an_output_folder_that_does_not_exist_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("no/such/model");
    let o = dtrain(&["init", "--arch", "tiny", "-o", s(&target)], b"");
    assert_fails(&o, 2, "its folder");
    assert!(stderr(&o).contains(&format!(
        "{} does not exist",
        dir.path().join("no/such").display()
    )));
}

#[test]
fn tokenize_refuses_what_is_not_text_and_names_the_format() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let jsonl = d.join("rows.jsonl");
    std::fs::write(&jsonl, b"{\"text\": \"hello\"}\n{\"text\": \"world\"}\n").unwrap();
    let o = dtrain(&["tokenize", s(&jsonl), "-o", s(&d.join("a.bin"))], b"");
    assert_fails(
        &o,
        2,
        "looks like JSON lines, not text; pass --format jsonl",
    );
    let binary = d.join("blob");
    std::fs::write(&binary, [0u8, 159, 146, 150, 0, 1, 2]).unwrap();
    let o = dtrain(&["tokenize", s(&binary), "-o", s(&d.join("b.bin"))], b"");
    assert_fails(&o, 2, "binary data");
    assert!(!stderr(&o).contains("--lossy"), "{}", stderr(&o));
    // a shard is already tokens
    let ok = dtrain(
        &[
            "tokenize",
            "--format",
            "jsonl",
            s(&jsonl),
            "-o",
            s(&d.join("c.bin")),
        ],
        b"",
    );
    assert!(ok.status.success(), "{}", stderr(&ok));
    // its one summary line: hash, documents, tokens
    assert!(stderr(&ok).contains("2 documents"), "{}", stderr(&ok));
    let o = dtrain(
        &["tokenize", s(&d.join("c.bin")), "-o", s(&d.join("d.bin"))],
        b"",
    );
    assert_fails(&o, 2, "a token shard");
    for out in ["a.bin", "b.bin", "d.bin"] {
        assert!(!d.join(out).exists(), "a refused run wrote {out}");
    }
}

#[test]
fn hub_mistakes_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let hub = Hub::start(&d.join("hub"), &[]);
    let model = d.join("m");
    assert!(dtrain(&["init", "--arch", "tiny", "-o", s(&model)], b"")
        .status
        .success());
    let home = d.join("hf");
    let o = dtrain_env(
        &["push", s(&model), "--repo", "me/model", "--tag", "1"],
        &[("HF_ENDPOINT", &hub.url), ("HF_HOME", s(&home))],
    );
    assert_fails(
        &o,
        2,
        "me/model: no such repository (pass --create to make it)",
    );
    // nothing listens there: exit 3, the URL once, and where the endpoint came from
    let dead = format!("http://127.0.0.1:{}", free_port());
    let o = dtrain_env(
        &[
            "pull",
            "--repo",
            "me/model",
            "--tag",
            "1",
            "--retries",
            "0",
            "-o",
            s(&d.join("p")),
        ],
        &[("HF_ENDPOINT", &dead), ("HF_HOME", s(&home))],
    );
    assert_fails(&o, 3, "set by HF_ENDPOINT");
    assert_eq!(
        stderr(&o).matches("/api/models/me/model").count(),
        1,
        "{}",
        stderr(&o)
    );
}

#[test]
fn reduce_checks_its_key_and_names_the_peers_it_never_reached() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (alice, bob) = (d.join("alice.key"), d.join("bob.key"));
    let (pa, pb) = (keygen(&alice), keygen(&bob));
    let peers = d.join("peers.toml");
    std::fs::write(&peers, peer_entry("alice", &pa) + &peer_entry("bob", &pb)).unwrap();
    let model = d.join("m");
    assert!(dtrain(&["init", "--arch", "tiny", "-o", s(&model)], b"")
        .status
        .success());
    let input = model.join("model.safetensors");
    let base = |key: &std::path::Path| {
        vec![
            "reduce".to_string(),
            "--peers".into(),
            s(&peers).into(),
            "--me".into(),
            "alice".into(),
            "--key".into(),
            s(key).into(),
            "--round".into(),
            "r".into(),
            "--weight".into(),
            "0".into(),
            "--in".into(),
            s(&input).into(),
            "--out".into(),
            s(&d.join("avg.safetensors")).into(),
            "--deadline".into(),
            "4".into(),
            "--min-peers".into(),
            "2".into(),
        ]
    };
    // bob's key under alice's name: refused before any connection
    let args = base(&bob);
    let o = dtrain(&args.iter().map(String::as_str).collect::<Vec<_>>(), b"");
    assert_fails(&o, 2, "--key is not alice's key");
    // bob never comes: the error names him and why
    let args = base(&alice);
    let o = dtrain(&args.iter().map(String::as_str).collect::<Vec<_>>(), b"");
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("; bob: "), "{}", stderr(&o));
}
