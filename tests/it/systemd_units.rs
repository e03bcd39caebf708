//! The systemd units in scripts/systemd/ are valid (systemd-analyze verify),
//! run the scripts that exist with flags those scripts accept, and the env
//! examples name only keys the scripts read.

use std::process::Command;

use crate::common::root;

#[test]
fn units_verify_and_point_at_real_scripts() {
    let src = root().join("scripts/systemd");
    let dir = tempfile::tempdir().unwrap();
    let mut units = Vec::new();
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if !(name.ends_with(".service") || name.ends_with(".timer")) {
            continue;
        }
        // the units assume the clone at /opt/dtrain: point them at this one
        let text = std::fs::read_to_string(&p).unwrap();
        for line in text.lines().filter(|l| l.starts_with("ExecStart=")) {
            let cmd = line.trim_start_matches("ExecStart=");
            let script = cmd.split_whitespace().next().unwrap();
            let local = root().join(script.trim_start_matches("/opt/dtrain/"));
            assert!(local.is_file(), "{name}: {script} is not in the repo");
            assert!(cmd.contains("--once"), "{name}: timers need --once");
            // the flags parse: --help exits 0 and documents --once and --env
            let help = Command::new(&local).arg("--help").output().unwrap();
            assert!(help.status.success(), "{script} --help");
            let help = String::from_utf8_lossy(&help.stdout);
            assert!(help.contains("--once") && help.contains("--env"), "{help}");
        }
        let out = dir.path().join(&name);
        std::fs::write(&out, text.replace("/opt/dtrain", root().to_str().unwrap())).unwrap();
        units.push(out);
    }
    assert_eq!(units.len(), 4, "miner@ and validator, .service and .timer");
    match Command::new("systemd-analyze")
        .arg("verify")
        .arg("--man=no")
        .args(&units)
        .output()
    {
        Ok(o) => assert!(
            o.status.success() && o.stderr.is_empty(),
            "systemd-analyze verify: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => {
            eprintln!("systemd-analyze not runnable here ({e}); checked paths and flags only")
        }
    }
    // every key of the env examples is one the scripts read
    let scripts: String = ["lib.sh", "miner.sh", "validator.sh"]
        .iter()
        .map(|f| std::fs::read_to_string(root().join("scripts").join(f)).unwrap())
        .collect();
    for ex in ["miner.env.example", "validator.env.example"] {
        let text = std::fs::read_to_string(src.join(ex)).unwrap();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && l.contains('='))
        {
            let key = line.split('=').next().unwrap();
            assert!(
                key == "HF_TOKEN" || scripts.contains(key),
                "{ex}: {key} is read by no script"
            );
        }
    }
}
