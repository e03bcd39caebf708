//! keygen as a process: keys are never overwritten, and the public half can
//! be recovered from the key.
use crate::common::*;

#[test]
fn keygen_never_overwrites_and_recovers_the_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    let k = key.to_str().unwrap();
    let o = dtrain(&["keygen", "-o", k], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    let public = String::from_utf8(o.stdout).unwrap();
    assert_eq!(public.trim().len(), 64);
    let o = dtrain(&["keygen", "--public", k], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(String::from_utf8(o.stdout).unwrap(), public);
    let before = std::fs::read(&key).unwrap();
    let o = dtrain(&["keygen", "-o", k], b"");
    assert!(!o.status.success(), "a key is never overwritten");
    assert_eq!(std::fs::read(&key).unwrap(), before);
    assert_fails(
        &dtrain(
            &[
                "keygen",
                "--public",
                dir.path().join("none").to_str().unwrap(),
            ],
            b"",
        ),
        2,
        "none",
    );
}
