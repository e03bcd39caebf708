//! fetch-shard and the local hub as processes over real HTTP on loopback:
//! determinism, disjoint assignment, specs, and every fault the client must
//! survive or report.
use std::path::Path;

use crate::common::*;

fn corpus_root(dir: &Path) -> std::path::PathBuf {
    let root = dir.join("hub");
    copy_tree(&fixture("hub"), &root);
    root
}

fn fetch(hub: &Hub, home: &Path, args: &[&str]) -> std::process::Output {
    let mut a = vec!["fetch-shard", "--retries", "3"];
    a.extend_from_slice(args);
    dtrain_env(
        &a,
        &[
            ("HF_ENDPOINT", &hub.url),
            ("HF_HOME", home.to_str().unwrap()),
            ("HF_TOKEN", ""),
        ],
    )
}

fn rows(o: &std::process::Output) -> Vec<serde_json::Value> {
    assert!(o.status.success(), "{}", stderr(o));
    o.stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect()
}

#[test]
fn same_arguments_same_bytes_and_uids_are_disjoint() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(&corpus_root(dir.path()), &[]);
    let home = dir.path().join("home");
    let a = fetch(
        &hub,
        &home,
        &["--seed", "7", "--epoch", "2", "--uid", "1", "--rows", "40"],
    );
    let b = fetch(
        &hub,
        &home,
        &["--seed", "7", "--epoch", "2", "--uid", "1", "--rows", "40"],
    );
    assert!(a.status.success() && a.stdout == b.stdout, "{}", stderr(&a));
    let mut seen = std::collections::HashSet::new();
    for uid in 0..8 {
        let r = rows(&fetch(
            &hub,
            &home,
            &[
                "--seed",
                "7",
                "--epoch",
                "2",
                "--uid",
                &uid.to_string(),
                "--rows",
                "40",
            ],
        ));
        assert_eq!(r.len(), 40);
        for row in r {
            assert!(
                seen.insert(row["row"].as_u64().unwrap()),
                "uid {uid} repeats row {}",
                row["row"]
            );
            assert!(!row["text"].as_str().unwrap().is_empty());
        }
    }
}

#[test]
fn spec_round_trip_and_local_source_agree() {
    let dir = tempfile::tempdir().unwrap();
    let root = corpus_root(dir.path());
    let hub = Hub::start(&root, &[]);
    let home = dir.path().join("home");
    let spec = dir.path().join("spec.json");
    let a = fetch(
        &hub,
        &home,
        &[
            "--uid",
            "5",
            "--rows",
            "30",
            "--spec-out",
            spec.to_str().unwrap(),
        ],
    );
    let b = fetch(&hub, &home, &["--spec", spec.to_str().unwrap()]);
    let c = dtrain(
        &[
            "fetch-shard",
            "--source",
            root.to_str().unwrap(),
            "--spec",
            spec.to_str().unwrap(),
        ],
        b"",
    );
    assert!(
        a.status.success() && c.status.success(),
        "{}{}",
        stderr(&a),
        stderr(&c)
    );
    assert_eq!(a.stdout, b.stdout);
    assert_eq!(a.stdout, c.stdout);
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&spec).unwrap()).unwrap();
    assert_eq!(s["files"].as_array().unwrap().len(), 4);
    assert_eq!(s["assignment"]["uid"], 5);
}

#[test]
fn only_the_selected_column_chunks_are_fetched() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(&corpus_root(dir.path()), &[]);
    let home = dir.path().join("home");
    // warm the footer cache, then measure
    assert!(fetch(&hub, &home, &["--uid", "2", "--rows", "25"])
        .status
        .success());
    let before = hub.stats()["bytes_sent"].as_u64().unwrap();
    let o = fetch(&hub, &home, &["--uid", "2", "--rows", "25", "--json"]);
    assert!(o.status.success());
    let sum: serde_json::Value = serde_json::from_str(stderr(&o).lines().last().unwrap()).unwrap();
    let served = hub.stats()["bytes_sent"].as_u64().unwrap() - before;
    let selected = sum["selected_bytes"].as_u64().unwrap();
    assert_eq!(
        sum["footer_bytes"], 0,
        "footers come from the HF_HOME cache"
    );
    assert!(
        served as f64 <= 1.1 * selected as f64 + 4096.0,
        "served {served} for {selected} selected (plus the listing)"
    );
}

#[test]
fn survives_dropped_connections_and_503s() {
    let dir = tempfile::tempdir().unwrap();
    let root = corpus_root(dir.path());
    let clean = Hub::start(&root, &[]);
    let want = fetch(
        &clean,
        &dir.path().join("h0"),
        &["--uid", "4", "--rows", "50"],
    );
    assert!(want.status.success());
    for faults in [["--drop-every", "2"], ["--fail-every", "2"]] {
        let hub = Hub::start(&root, &faults);
        let got = fetch(
            &hub,
            &dir.path().join(format!("h{}", faults[0])),
            &["--uid", "4", "--rows", "50"],
        );
        assert!(got.status.success(), "{faults:?}: {}", stderr(&got));
        assert_eq!(got.stdout, want.stdout, "{faults:?}");
    }
}

#[test]
fn gives_up_after_the_retries_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(&corpus_root(dir.path()), &["--fail-first", "1000"]);
    let t0 = std::time::Instant::now();
    let o = fetch(&hub, &dir.path().join("h"), &["--uid", "0", "--rows", "10"]);
    assert_fails(&o, 3, "gave up after 4 attempts");
    assert!(t0.elapsed().as_secs() < 30);
}

#[test]
fn auth_and_missing_paths_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let root = corpus_root(dir.path());
    let hub = Hub::start(&root, &["--token", "sesame"]);
    let home = dir.path().join("h");
    let o = fetch(&hub, &home, &["--rows", "5"]);
    assert_fails(&o, 2, "set HF_TOKEN");
    let ok = dtrain_env(
        &["fetch-shard", "--rows", "5"],
        &[
            ("HF_ENDPOINT", &hub.url),
            ("HF_HOME", home.to_str().unwrap()),
            ("HF_TOKEN", "sesame"),
        ],
    );
    assert!(ok.status.success(), "{}", stderr(&ok));
    let open = Hub::start(&root, &[]);
    let o = fetch(&open, &home, &["--repo", "nobody/nothing", "--rows", "5"]);
    assert_fails(&o, 2, "not found: datasets/nobody/nothing");
    let o = fetch(&open, &home, &["--config", "sample-1T", "--rows", "5"]);
    assert_fails(&o, 2, "sample/1T");
}

#[test]
fn a_corrupt_footer_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = corpus_root(dir.path());
    let victim = root.join("datasets/HuggingFaceFW/fineweb/sample/350BT/002_00000.parquet");
    let mut bytes = std::fs::read(&victim).unwrap();
    let n = bytes.len();
    bytes.truncate(n - 100); // the footer loses its tail
    std::fs::write(&victim, &bytes).unwrap();
    let hub = Hub::start(&root, &[]);
    let o = fetch(&hub, &dir.path().join("h"), &["--rows", "5"]);
    assert_fails(
        &o,
        2,
        "sample/350BT/002_00000.parquet: not a parquet file or a corrupt footer",
    );
    let o = dtrain(
        &[
            "fetch-shard",
            "--source",
            root.to_str().unwrap(),
            "--rows",
            "5",
        ],
        b"",
    );
    assert_fails(&o, 2, "002_00000.parquet");
}

#[test]
fn fetch_pipes_into_tokenize() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(&corpus_root(dir.path()), &[]);
    let rows = fetch(&hub, &dir.path().join("h"), &["--uid", "1", "--rows", "20"]);
    let o = dtrain(&["tokenize", "--format", "jsonl"], &rows.stdout);
    assert!(o.status.success(), "{}", stderr(&o));
    let n = i32::from_le_bytes(o.stdout[8..12].try_into().unwrap());
    assert!(n > 200, "{n} tokens");
    let eots = o.stdout[1024..]
        .chunks(2)
        .filter(|c| u16::from_le_bytes([c[0], c[1]]) == 50256)
        .count();
    assert_eq!(eots, 20);
}

#[test]
fn too_many_uids_or_rows_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let root = corpus_root(dir.path());
    let o = dtrain(
        &[
            "fetch-shard",
            "--source",
            root.to_str().unwrap(),
            "--rows",
            "1000",
            "--uid",
            "7",
        ],
        b"",
    );
    assert_fails(&o, 2, "uid 7 has no disjoint slice: 7 slices of 1000 rows");
    let o = dtrain(
        &[
            "fetch-shard",
            "--source",
            root.to_str().unwrap(),
            "--rows",
            "100000",
        ],
        b"",
    );
    assert_fails(&o, 2, "fewer than the 100000 requested");
}
