//! README as an executable document (the idea of trycmd and doctests): the
//! shell block under "Commands" marked `readme-test` runs as written in an
//! empty folder, and what it prints must have the shape of its `#>` lines.
//!
//! Each run of `#>` lines states the output of every command since the run
//! before it. Shapes are compared with hex strings of 7+ digits and numbers
//! masked, so hashes that depend on the CPU, timings and keys do not matter
//! but every line, word and column does: README cannot drift from the tool.
use crate::common::*;
use regex::Regex;
use std::sync::LazyLock;

/// The marked block: its script lines.
fn readme_block() -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let marker = readme
        .find("<!-- readme-test")
        .expect("a readme-test block");
    let body = &readme[marker..];
    let start = body.find("```sh\n").unwrap() + "```sh\n".len();
    let end = start + body[start..].find("\n```").unwrap();
    body[start..end].lines().map(str::to_string).collect()
}

/// The script with each run of `#>` lines replaced by a marker, and the
/// expected lines of each marker.
fn instrument(block: &[String]) -> (String, Vec<Vec<String>>) {
    // background processes (the hub) must not outlive a failed step: they
    // would hold the output pipe open
    let mut script = String::from(
        "set -euo pipefail\nexec 2>&1\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n",
    );
    let mut expected: Vec<Vec<String>> = Vec::new();
    let mut in_run = false;
    for line in block {
        match line.strip_prefix("#>") {
            Some(out) => {
                if !in_run {
                    script.push_str(&format!("echo '@@@ {}'\n", expected.len()));
                    expected.push(Vec::new());
                    in_run = true;
                }
                let out = out.strip_prefix(' ').unwrap_or(out);
                expected.last_mut().unwrap().push(out.to_string());
            }
            None => {
                in_run = false;
                script.push_str(line);
                script.push('\n');
            }
        }
    }
    script.push_str(&format!("echo '@@@ {}'\n", expected.len()));
    (script, expected)
}

/// A line's shape: hashes (7+ hex digits with a letter, or 16+) become H,
/// numbers become N.
fn shape(line: &str) -> String {
    static HEX: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b[0-9a-f]{7,}\b").unwrap());
    static NUM: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"[0-9]+(\.[0-9]+)?(e[-+]?[0-9]+)?").unwrap());
    let hashes = HEX.replace_all(line, |c: &regex::Captures| {
        let m = &c[0];
        if m.len() >= 16 || m.bytes().any(|b| b.is_ascii_alphabetic()) {
            "H".to_string()
        } else {
            m.to_string()
        }
    });
    NUM.replace_all(&hashes, "N").trim_end().to_string()
}

#[test]
fn readme_commands_run_as_written() {
    let _machine = beside_others();
    let block = readme_block();
    let (script, expected) = instrument(&block);
    assert!(
        expected.len() >= 8,
        "the block shows the output of its commands"
    );
    // an empty folder beside the clone's tests/ and target/, as in the clone's root
    let dir = tempfile::tempdir().unwrap();
    for name in ["tests", "target"] {
        std::os::unix::fs::symlink(root().join(name), dir.path().join(name)).unwrap();
    }
    let o = std::process::Command::new("bash")
        .args(["-c", &script])
        .current_dir(dir.path())
        .env_remove("HF_ENDPOINT")
        .env_remove("HF_TOKEN")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "the README block failed:\n{out}");
    // the output before marker k (and after marker k-1) is what run k shows
    let mut got: Vec<Vec<String>> = vec![Vec::new()];
    for line in out.lines() {
        if line.starts_with("@@@ ") {
            got.push(Vec::new());
        } else {
            got.last_mut().unwrap().push(line.to_string());
        }
    }
    assert_eq!(got.len(), expected.len() + 2, "{out}");
    assert!(
        got[expected.len()].is_empty(),
        "output after the last #> run: {:?}",
        got[expected.len()]
    );
    // README_RUN_OUT=FILE: write what this run printed, as `#>` runs, to
    // refresh README's block from a real run
    if let Ok(path) = std::env::var("README_RUN_OUT") {
        let runs: Vec<String> = got[..expected.len()]
            .iter()
            .map(|run| run.iter().map(|l| format!("#> {l}\n")).collect())
            .collect();
        std::fs::write(path, runs.join("@@@\n")).unwrap();
    }
    for (k, want) in expected.iter().enumerate() {
        let have = &got[k];
        let shapes = |v: &[String]| v.iter().map(|l| shape(l)).collect::<Vec<_>>();
        assert_eq!(
            shapes(have),
            shapes(want),
            "README's output run {k} no longer matches what the commands print:\nREADME:\n{}\nnow:\n{}",
            want.join("\n"),
            have.join("\n")
        );
    }
}

#[test]
fn shapes_mask_hashes_and_figures_only() {
    let _machine = beside_others();
    assert_eq!(
        shape("d17687582deab907…  model-0  (3382080 parameters)"),
        "H…  model-N  (N parameters)"
    );
    assert_eq!(
        shape("loss 10.8371  grad 93a6ee8466b90f8c"),
        "loss N  grad H"
    );
    assert_eq!(shape("lr 3.000e-3"), "lr N");
    assert_ne!(shape("members alice,bob"), shape("members alice"));
}
