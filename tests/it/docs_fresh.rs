//! The committed man pages and completions must equal what the current clap
//! definition renders: run `dtrain gen-docs` and commit when this fails.
use crate::common::*;

#[test]
fn man_pages_and_completions_are_up_to_date() {
    let dir = tempfile::tempdir().unwrap();
    let o = dtrain(&["gen-docs", "--out", dir.path().to_str().unwrap()], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    let mut checked = 0;
    for sub in ["man/man1", "completions"] {
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

/// `man dtrain-<command>` finds its page with MANPATH=$PWD/man, and the
/// examples are set unfilled, so a command line is never broken or hyphenated.
#[test]
fn man_finds_the_pages_and_examples_are_unfilled() {
    let page = std::fs::read_to_string(root().join("man/man1/dtrain-apply.1")).unwrap();
    let examples = &page[page.find(".SH EXAMPLES").expect("an EXAMPLES section")..];
    assert!(examples.contains(".EX\n  dtrain apply"), "{examples}");
    if which("man") {
        let o = std::process::Command::new("man")
            .args(["-w", "dtrain-apply"])
            .env("MANPATH", root().join("man"))
            .output()
            .unwrap();
        let path = String::from_utf8_lossy(&o.stdout);
        assert!(path.trim().ends_with("man/man1/dtrain-apply.1"), "{path}");
    }
}

fn which(cmd: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Every option of every command says what it is for in --help and man.
#[test]
fn every_flag_has_a_help_line() {
    let o = dtrain(&["--help"], b"");
    let top = String::from_utf8_lossy(&o.stdout).to_string();
    let mut missing = Vec::new();
    for page in std::fs::read_dir(root().join("man/man1")).unwrap() {
        let path = page.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        // an option is ".TP", its flags line, then its help text
        let lines: Vec<&str> = text.lines().collect();
        for w in lines.windows(3) {
            if w[0] == ".TP"
                && w[1].starts_with("\\fB")
                && (w[2].is_empty() || w[2].starts_with('.'))
            {
                missing.push(format!(
                    "{}: {}",
                    path.file_name().unwrap().to_string_lossy(),
                    w[1]
                ));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "options without help:\n{}\n{top}",
        missing.join("\n")
    );
}

/// In an 80-column terminal, --help leaves an example's command lines whole
/// (clap wraps option help, not the examples): each is printed as written.
#[test]
fn help_examples_do_not_wrap_mid_command() {
    if !which("script") {
        return;
    }
    let cmd = format!("stty cols 80; {} score --help", bin().display());
    let o = std::process::Command::new("script")
        .args(["-q", "-c", &cmd, "/dev/null"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&o.stdout).replace('\r', "");
    assert!(
        help.contains("  dtrain score --verdicts verdicts.jsonl --receipt a.json --receipt b.json --transcript t.json \\\n"),
        "{help}"
    );
}
