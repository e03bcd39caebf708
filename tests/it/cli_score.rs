//! score as a process: state carried between epochs, other parties' files
//! that do not parse left out.
use crate::common::*;

#[test]
fn score_carries_state_between_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let v = dir.path().join("v.jsonl");
    std::fs::write(&v, "{\"miner\":\"a\",\"pass\":true,\"sequences\":8}\n{\"miner\":\"b\",\"pass\":false,\"sequences\":0}\n").unwrap();
    let st = dir.path().join("state.json");
    let w = dir.path().join("w.json");
    for epoch in 0..2 {
        let e = epoch.to_string();
        let mut args = vec![
            "score",
            "--verdicts",
            v.to_str().unwrap(),
            "--state-out",
            st.to_str().unwrap(),
            "--weights-out",
            w.to_str().unwrap(),
            "--epoch",
            &e,
            "--explain",
        ];
        let prev = st.clone();
        if epoch > 0 {
            args.extend_from_slice(&["--state", prev.to_str().unwrap()]);
        }
        let o = dtrain(&args, b"");
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stderr(&o).contains("miner"), "--explain prints a table");
    }
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(&st).unwrap()).unwrap();
    // raw 0.5 for a both epochs: 0.05·0.5 then 0.95·0.025 + 0.05·0.5
    assert!(
        (state["ema"]["a"].as_f64().unwrap() - 0.04875).abs() < 1e-12,
        "{state}"
    );
    assert_eq!(state["ema"]["b"], 0.0);
    let weights: serde_json::Value = serde_json::from_slice(&std::fs::read(&w).unwrap()).unwrap();
    assert_eq!(weights["weights"]["a"], 1.0);
    let o = dtrain(
        &[
            "score",
            "--verdicts",
            v.to_str().unwrap(),
            "--state-out",
            st.to_str().unwrap(),
            "--state",
            w.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(
        o.status.code(),
        Some(2),
        "a weights file is not a state file: {}",
        stderr(&o)
    );
}

/// A miner's malformed receipt used to make score exit 2, stopping the
/// validator's scoring for everyone; it is now left out, said once.
#[test]
fn a_malformed_receipt_does_not_stop_scoring() {
    let dir = tempfile::tempdir().unwrap();
    let v = dir.path().join("v.jsonl");
    std::fs::write(&v, "{\"miner\":\"a\",\"pass\":true,\"sequences\":8}\n{\"miner\":\"b\",\"pass\":false,\"sequences\":0}\n").unwrap();
    let bad = dir.path().join("b.json");
    std::fs::write(&bad, b"{\"version\": 2, \"miner\": ").unwrap();
    let st = dir.path().join("state.json");
    let o = dtrain(
        &[
            "score",
            "--verdicts",
            v.to_str().unwrap(),
            "--receipt",
            bad.to_str().unwrap(),
            "--state-out",
            st.to_str().unwrap(),
        ],
        b"",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("not a receipt"), "{}", stderr(&o));
    let scores: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(scores["weights"]["a"], 1.0, "{scores}");
    assert_eq!(scores["weights"]["b"], 0.0, "{scores}");
}
