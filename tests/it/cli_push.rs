//! push and pull against the local hub over real HTTP: round trips, the
//! idempotent re-push, tag conflicts, injected faults, restarts.
use std::path::Path;

use crate::common::*;

fn env(hub: &Hub, home: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("HF_ENDPOINT", hub.url.clone()),
        ("HF_HOME", home.display().to_string()),
        ("HF_TOKEN", String::new()),
    ]
}

fn run_env(args: &[&str], env: &[(&'static str, String)]) -> std::process::Output {
    let e: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    dtrain_env(args, &e)
}

fn init(dir: &Path, name: &str, arch: &str, seed: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    assert!(dtrain(
        &[
            "init",
            "--arch",
            arch,
            "--seed",
            seed,
            "-o",
            p.to_str().unwrap()
        ],
        b""
    )
    .status
    .success());
    p
}

fn same_tree(a: &Path, b: &Path) {
    for f in ["config.json", "model.safetensors"] {
        assert!(
            std::fs::read(a.join(f)).unwrap() == std::fs::read(b.join(f)).unwrap(),
            "{f} differs"
        );
    }
}

#[test]
fn round_trip_repush_and_conflicts() {
    let _machine = beside_others();
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(&dir.path().join("root"), &[]);
    let e = env(&hub, &dir.path().join("home"));
    let a = init(dir.path(), "a", "tiny", "1");
    let b = init(dir.path(), "b", "tiny", "2");
    let o = run_env(
        &[
            "push",
            a.to_str().unwrap(),
            "--repo",
            "org/m",
            "--tag",
            "0",
            "--create",
            "--json",
        ],
        &e,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let first: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(first["bytes_uploaded"].as_u64().unwrap() > 13_000_000);
    // the same tag with the same files: nothing uploaded
    let o = run_env(
        &[
            "push",
            a.to_str().unwrap(),
            "--repo",
            "org/m",
            "--tag",
            "0",
            "--json",
        ],
        &e,
    );
    let again: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (
            again["unchanged"].as_bool(),
            again["bytes_uploaded"].as_u64()
        ),
        (Some(true), Some(0))
    );
    assert_eq!(again["commit"], first["commit"]);
    // the same tag with other files: refused, nothing moved
    let o = run_env(
        &["push", b.to_str().unwrap(), "--repo", "org/m", "--tag", "0"],
        &e,
    );
    assert_fails(&o, 2, "tag 0 of org/m already exists and holds other files");
    // a new tag; identical LFS objects are not uploaded twice
    let o = run_env(
        &[
            "push",
            b.to_str().unwrap(),
            "--repo",
            "org/m",
            "--tag",
            "1",
            "--json",
        ],
        &e,
    );
    assert!(o.status.success());
    let o = run_env(
        &[
            "push",
            a.to_str().unwrap(),
            "--repo",
            "org/m",
            "--tag",
            "2",
            "--json",
        ],
        &e,
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["bytes_uploaded"].as_u64().unwrap() < 10_000,
        "model.safetensors was already on the server: {v}"
    );
    // pull a tag, and the latest epoch
    let got = dir.path().join("got");
    assert!(run_env(
        &[
            "pull",
            "--repo",
            "org/m",
            "--tag",
            "0",
            "-o",
            got.to_str().unwrap()
        ],
        &e
    )
    .status
    .success());
    same_tree(&a, &got);
    let o = run_env(
        &[
            "pull",
            "--repo",
            "org/m",
            "--latest-epoch",
            "-o",
            got.to_str().unwrap(),
            "--json",
        ],
        &e,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"tag\":\"2\""));
    same_tree(&a, &got);
    let o = run_env(
        &[
            "pull",
            "--repo",
            "org/m",
            "--tag",
            "9",
            "-o",
            got.to_str().unwrap(),
        ],
        &e,
    );
    assert_fails(&o, 2, "org/m has no tag 9");
    same_tree(&a, &got); // a failed pull leaves the folder as it was
}

#[test]
fn pushes_survive_faults_within_their_retries_and_fail_cleanly_beyond() {
    let _machine = beside_others();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let ck = init(dir.path(), "c", "tiny", "3");
    for (i, faults) in [["--fail-every", "3"], ["--drop-every", "2"]]
        .iter()
        .enumerate()
    {
        let hub = Hub::start(&root, &faults[..]);
        let e = env(&hub, &dir.path().join("home"));
        let tag = format!("{i}");
        let o = run_env(
            &[
                "push",
                ck.to_str().unwrap(),
                "--repo",
                "org/f",
                "--tag",
                &tag,
                "--create",
                "--retries",
                "5",
            ],
            &e,
        );
        assert!(o.status.success(), "{faults:?}: {}", stderr(&o));
        let got = dir.path().join(format!("got{i}"));
        let o = run_env(
            &[
                "pull",
                "--repo",
                "org/f",
                "--tag",
                &tag,
                "-o",
                got.to_str().unwrap(),
                "--retries",
                "5",
            ],
            &e,
        );
        assert!(o.status.success(), "{faults:?}: {}", stderr(&o));
        same_tree(&ck, &got);
    }
    // beyond the retries: one clear line, and no commit or tag on the server
    let refs_before = std::fs::read(root.join(".dtrain-hub/repos/models/org/f/refs.json")).unwrap();
    let hub = Hub::start(&root, &["--fail-first", "1000"]);
    let e = env(&hub, &dir.path().join("home"));
    let other = init(dir.path(), "d", "tiny", "4");
    let o = run_env(
        &[
            "push",
            other.to_str().unwrap(),
            "--repo",
            "org/f",
            "--tag",
            "7",
            "--retries",
            "2",
        ],
        &e,
    );
    assert_fails(&o, 3, "gave up after 3 attempts");
    assert_eq!(
        std::fs::read(root.join(".dtrain-hub/repos/models/org/f/refs.json")).unwrap(),
        refs_before,
        "no half commit"
    );
}

#[test]
fn a_gpt2_sized_checkpoint_round_trips_and_the_hub_keeps_it_across_restarts() {
    let _machine = beside_others();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let ck = init(dir.path(), "big", "gpt2", "0");
    assert!(
        std::fs::metadata(ck.join("model.safetensors"))
            .unwrap()
            .len()
            > 400_000_000
    );
    {
        let hub = Hub::start(&root, &[]);
        let e = env(&hub, &dir.path().join("home"));
        let o = run_env(
            &[
                "push",
                ck.to_str().unwrap(),
                "--repo",
                "org/big",
                "--tag",
                "0",
                "--create",
            ],
            &e,
        );
        assert!(o.status.success(), "{}", stderr(&o));
    } // the server stops here
    let hub = Hub::start(&root, &[]);
    let e = env(&hub, &dir.path().join("home"));
    let got = dir.path().join("got");
    let o = run_env(
        &[
            "pull",
            "--repo",
            "org/big",
            "--latest-epoch",
            "-o",
            got.to_str().unwrap(),
        ],
        &e,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    same_tree(&ck, &got);
}

#[test]
fn file_urls_publish_into_a_local_hub_folder() {
    let _machine = beside_others();
    let dir = tempfile::tempdir().unwrap();
    let ck = init(dir.path(), "c", "tiny", "5");
    let url = format!("file://{}/hub/org/local", dir.path().display());
    assert!(dtrain(
        &["push", ck.to_str().unwrap(), "--repo", &url, "--tag", "4"],
        b""
    )
    .status
    .success());
    // the same folder served over HTTP holds the tag
    let hub = Hub::start(&dir.path().join("hub"), &[]);
    let e = env(&hub, &dir.path().join("home"));
    let got = dir.path().join("got");
    let o = run_env(
        &[
            "pull",
            "--repo",
            "org/local",
            "--tag",
            "4",
            "-o",
            got.to_str().unwrap(),
        ],
        &e,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    same_tree(&ck, &got);
}
