//! ledger as processes: appends, chain checks, tampering named, plots.
use crate::common::*;

/// Appends epoch `e`'s entry (1000·(e+1) tokens, contributors a and b), signed with `key`.
fn append(ledger: &std::path::Path, key: &std::path::Path, e: u64, scores: &std::path::Path) {
    let o = try_append(ledger, key, e, scores, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
}

fn try_append(
    ledger: &std::path::Path,
    key: &std::path::Path,
    e: u64,
    scores: &std::path::Path,
    extra: &[&str],
) -> std::process::Output {
    let (es, tokens, model) = (
        e.to_string(),
        (1000 * (e + 1)).to_string(),
        format!("{e:064x}"),
    );
    let args = [
        "ledger",
        "append",
        "--ledger",
        ledger.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--epoch",
        &es,
        "--step",
        &es,
        "--model",
        &model,
        "--tokens",
        &tokens,
        "--contributors",
        "a,b",
        "--scores",
        scores.to_str().unwrap(),
    ];
    dtrain(&[&args[..], extra].concat(), b"")
}

fn verify(ledger: &std::path::Path, pubkey: &str) -> std::process::Output {
    let args = [
        "ledger",
        "verify",
        "--ledger",
        ledger.to_str().unwrap(),
        "--pubkey",
        pubkey,
    ];
    dtrain(&args, b"")
}

fn show_last(ledger: &std::path::Path) -> std::process::Output {
    dtrain(
        &[
            "ledger",
            "show",
            "--ledger",
            ledger.to_str().unwrap(),
            "--last",
        ],
        b"",
    )
}

#[test]
fn ledger_appends_verifies_and_names_a_tampered_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (l, k, scores) = (
        dir.path().join("ledger.jsonl"),
        dir.path().join("v.key"),
        dir.path().join("scores.json"),
    );
    let pk = String::from_utf8(dtrain(&["keygen", "-o", k.to_str().unwrap()], b"").stdout)
        .unwrap()
        .trim()
        .to_string();
    std::fs::write(&scores, b"{}").unwrap();
    let o = show_last(&l);
    assert_fails(&o, 2, "no such ledger file");
    let o = verify(&l, &pk);
    assert_fails(&o, 2, "no such ledger file");
    std::fs::write(&l, b"").unwrap();
    let o = show_last(&l);
    assert_fails(&o, 2, "the ledger is empty");
    let o = verify(&l, &pk);
    assert!(String::from_utf8_lossy(&o.stdout).contains("the ledger is empty"));
    for e in 0..3 {
        append(&l, &k, e, &scores);
    }
    let o = verify(&l, &pk);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = dtrain(
        &[
            "ledger",
            "show",
            "--ledger",
            l.to_str().unwrap(),
            "--last",
            "--json",
        ],
        b"",
    );
    let last: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (last["epoch"].as_u64(), last["tokens"].as_u64()),
        (Some(2), Some(3000))
    );
    assert_eq!(last["contributors"], serde_json::json!(["a", "b"]));
    let text = std::fs::read_to_string(&l).unwrap();
    let last_line = text.lines().last().unwrap();
    assert_eq!(
        last["hash"].as_str(),
        Some(blake3::hash(last_line.as_bytes()).to_hex().as_str())
    );
    // a validator restarted after appending epoch 2 cannot record it again
    let o = try_append(&l, &k, 2, &scores, &[]);
    assert_fails(&o, 1, "would fork it");
    assert_eq!(std::fs::read_to_string(&l).unwrap(), text);
    // tamper with entry 1: verify names it and exits 1
    let text = std::fs::read_to_string(&l).unwrap();
    std::fs::write(&l, text.replacen("\"tokens\":2000", "\"tokens\":2500", 1)).unwrap();
    let o = verify(&l, &pk);
    assert_fails(&o, 1, "ledger entry 1:");
    // a history rewritten and re-signed by another key is consistent in
    // itself: only the pinned key tells, so verify will not run without one
    let forger = dir.path().join("forger.key");
    assert!(dtrain(&["keygen", "-o", forger.to_str().unwrap()], b"")
        .status
        .success());
    let forged = dir.path().join("forged.jsonl");
    append(&forged, &forger, 0, &scores);
    let o = dtrain(
        &["ledger", "verify", "--ledger", forged.to_str().unwrap()],
        b"",
    );
    assert_eq!(
        o.status.code(),
        Some(2),
        "verify without --pubkey: {}",
        stderr(&o)
    );
    let o = dtrain(
        &[
            "ledger",
            "verify",
            "--ledger",
            forged.to_str().unwrap(),
            "--pubkey",
            &pk,
        ],
        b"",
    );
    assert_ne!(o.status.code(), Some(0), "a forged history verified");
    // another validator's key is refused
    let o = dtrain(
        &[
            "ledger",
            "verify",
            "--ledger",
            l.to_str().unwrap(),
            "--pubkey",
            &"ab".repeat(32),
        ],
        b"",
    );
    assert_ne!(o.status.code(), Some(0));
}

/// `ledger plot` draws a PNG of the asked size (or an SVG) with something on
/// it; a name that is neither is refused with exit 2 and no file.
#[test]
fn ledger_plot_draws_png_and_svg() {
    let dir = tempfile::tempdir().unwrap();
    let (l, k, scores) = (
        dir.path().join("ledger.jsonl"),
        dir.path().join("v.key"),
        dir.path().join("scores.json"),
    );
    assert!(dtrain(&["keygen", "-o", k.to_str().unwrap()], b"")
        .status
        .success());
    std::fs::write(&scores, b"{}").unwrap();
    for e in 0..4 {
        let loss = format!("{}", 10.0 - e as f64);
        let o = try_append(&l, &k, e, &scores, &["--loss", &loss, "--eval-loss", &loss]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let plot = |out: &std::path::Path, extra: &[&str]| {
        let args = [
            "ledger",
            "plot",
            "--ledger",
            l.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ];
        dtrain(&[&args[..], extra].concat(), b"")
    };
    let png = dir.path().join("loss.png");
    let o = plot(&png, &["--width", "640", "--height", "400"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let img = image::open(&png).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (640, 400));
    let drawn = img.pixels().filter(|p| p.0 != [255, 255, 255]).count();
    assert!(drawn > 3000, "only {drawn} pixels drawn");
    // the curves' colours are there: blue (miners) and red (eval)
    assert!(img.pixels().any(|p| p.0 == [0, 0, 255]) && img.pixels().any(|p| p.0 == [255, 0, 0]));
    let svg = dir.path().join("loss.svg");
    let o = plot(&svg, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    let bad = dir.path().join("loss.gif");
    let o = plot(&bad, &[]);
    assert_fails(&o, 2, "must be a .png or .svg");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names.len(),
        5,
        "no temporaries or refused outputs left: {names:?}"
    );
}

/// A ledger is anyone's file until a pinned key checks it: a model field that
/// is not hex (here multibyte, its 16th byte inside a character) is shown,
/// never a panic.
#[test]
fn ledger_show_survives_a_model_that_is_not_hex() {
    let dir = tempfile::tempdir().unwrap();
    let (l, k, scores) = (
        dir.path().join("ledger.jsonl"),
        dir.path().join("v.key"),
        dir.path().join("scores.json"),
    );
    assert!(dtrain(&["keygen", "-o", k.to_str().unwrap()], b"")
        .status
        .success());
    std::fs::write(&scores, b"{}").unwrap();
    let (l_s, k_s, scores_s) = (
        l.to_str().unwrap(),
        k.to_str().unwrap(),
        scores.to_str().unwrap(),
    );
    let args = [
        "ledger",
        "append",
        "--ledger",
        l_s,
        "--key",
        k_s,
        "--epoch",
        "0",
        "--step",
        "1",
        "--model",
        "aéééééééééééééééééé",
        "--tokens",
        "1",
        "--contributors",
        "a",
        "--scores",
        scores_s,
    ];
    let o = dtrain(&args, b"");
    assert!(o.status.success(), "{}", stderr(&o));
    let o = dtrain(&["ledger", "show", "--ledger", l.to_str().unwrap()], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("model aééééééééééééééé "));
}
