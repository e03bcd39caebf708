//! The committed man pages and completions must equal what the current clap
//! definition renders: run `dtrain gen-docs` and commit when this fails.
mod common;
use common::*;

#[test]
fn man_pages_and_completions_are_up_to_date() {
    let dir = tempfile::tempdir().unwrap();
    let o = dtrain(&["gen-docs", "--out", dir.path().to_str().unwrap()], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    let mut checked = 0;
    for sub in ["man", "completions"] {
        let fresh = dir.path().join(sub);
        for entry in std::fs::read_dir(&fresh).unwrap() {
            let entry = entry.unwrap();
            let committed = root().join(sub).join(entry.file_name());
            let want = std::fs::read(entry.path()).unwrap();
            let have = std::fs::read(&committed).unwrap_or_default();
            assert!(
                have == want,
                "{} is stale: run `target/release/dtrain gen-docs` and commit",
                committed.display()
            );
            checked += 1;
        }
        let committed_count = std::fs::read_dir(root().join(sub)).unwrap().count();
        let fresh_count = std::fs::read_dir(&fresh).unwrap().count();
        assert_eq!(
            committed_count, fresh_count,
            "{sub}/ holds files gen-docs no longer makes"
        );
    }
    assert!(checked >= 5);
}
