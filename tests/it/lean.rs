//! The lean `dtrain`: it links no libtorch (ldd lists only the C runtime), runs
//! the model-free commands itself and hands the torch commands to
//! `dtrain-torch` beside it, with the same arguments and exit codes.
use crate::common::*;

/// The shared libraries a binary asks for, by file name.
fn needed(bin: &std::path::Path) -> Vec<String> {
    let o = std::process::Command::new("ldd")
        .arg(bin)
        .output()
        .expect("ldd");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(|l| l.rsplit('/').next().unwrap().to_string())
        .collect()
}

#[test]
fn dtrain_links_only_the_c_runtime_and_dtrain_torch_links_libtorch() {
    const C_RUNTIME: [&str; 9] = [
        "linux-vdso.so.1",
        "libc.so.6",
        "libm.so.6",
        "libgcc_s.so.1",
        "libpthread.so.0",
        "libdl.so.2",
        "librt.so.1",
        "ld-linux-x86-64.so.2",
        "ld-linux-aarch64.so.1",
    ];
    let lean = needed(&bin());
    let other: Vec<&String> = lean
        .iter()
        .filter(|l| !C_RUNTIME.contains(&l.as_str()))
        .collect();
    assert!(other.is_empty(), "dtrain needs {other:?}");
    let torch = needed(&bin().with_file_name("dtrain-torch"));
    assert!(
        torch.iter().any(|l| l.starts_with("libtorch_cpu")),
        "{torch:?}"
    );
}

#[test]
fn torch_commands_are_handed_over_and_fail_clearly_without_dtrain_torch() {
    let dir = tempfile::tempdir().unwrap();
    // beside dtrain-torch: the same result as dtrain-torch itself, exit codes included
    let o = dtrain(&["info", "--json"], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        info["libtorch"].as_str().unwrap().starts_with("2.11"),
        "{info}"
    );
    let missing = dir.path().join("nope");
    let o = dtrain(
        &[
            "eval",
            "--model",
            missing.to_str().unwrap(),
            "--tokens",
            "x.bin",
        ],
        b"",
    );
    assert_fails(&o, 2, "--model");
    // alone: the model-free commands work; a torch command says what is missing
    let alone = dir.path().join("dtrain");
    std::fs::copy(bin(), &alone).unwrap();
    let o = std::process::Command::new(&alone)
        .args(["hash", "Cargo.toml"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = std::process::Command::new(&alone)
        .args(["info"])
        .output()
        .unwrap();
    assert_fails(&o, 3, "runs in dtrain-torch, which is not beside");
    // help needs no dtrain-torch either: it is the same command line
    let o = std::process::Command::new(&alone)
        .args(["train-step", "--help"])
        .output()
        .unwrap();
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("--micro-batch"));
}
