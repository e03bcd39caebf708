//! `dtrain tokenize` as a process: outputs, error lines, exit codes, atomicity.
use crate::common::*;

#[test]
fn writes_a_shard_file_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.bin");
    let o = dtrain(
        &["tokenize", "--format", "lines", "-o", out.to_str().unwrap()],
        b"Hello world\n the\n",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let shard = dtrain::tokens::Shard::open(&out).unwrap();
    assert_eq!(shard.tokens(), &[50256, 15496, 995, 50256, 262]);
}

#[test]
fn empty_input_gives_a_valid_empty_shard() {
    let o = dtrain(&["tokenize"], b"");
    assert!(o.status.success());
    assert_eq!(o.stdout.len(), 1024);
    assert_eq!(&o.stdout[0..4], &20240520i32.to_le_bytes());
    assert_eq!(&o.stdout[8..12], &0i32.to_le_bytes());
}

#[test]
fn bad_json_names_the_line_and_leaves_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.bin");
    std::fs::write(&out, b"previous").unwrap();
    let o = dtrain(
        &["tokenize", "--format", "jsonl", "-o", out.to_str().unwrap()],
        b"{\"text\": \"fine\"}\n{\"id\": 3}\n",
    );
    assert_fails(&o, 2, "line 2: no string field \"text\"");
    assert_eq!(
        std::fs::read(&out).unwrap(),
        b"previous",
        "failed run must not touch the output"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temp file left behind"
    );

    let o = dtrain(
        &["tokenize", "--format", "jsonl"],
        b"{\"text\": \"a\"}\n{broken\n",
    );
    assert_fails(&o, 2, "<stdin>: line 2: invalid JSON");
}

#[test]
fn invalid_utf8_gives_the_offset_or_is_replaced_with_lossy() {
    let o = dtrain(&["tokenize"], b"abc\xc3\x28def");
    assert_fails(&o, 2, "invalid UTF-8 at byte offset 3");
    let o = dtrain(&["tokenize", "--lossy"], b"abc\xc3\x28def");
    assert!(o.status.success());
}

#[test]
fn missing_input_file_is_one_clear_line() {
    let o = dtrain(&["tokenize", "/nonexistent/file.txt"], b"");
    assert_fails(&o, 2, "input /nonexistent/file.txt: No such file");
}

#[test]
fn bad_tokenizer_path_is_bad_input() {
    let o = dtrain(&["tokenize", "--tokenizer", "/nonexistent/tok.json"], b"x");
    assert_fails(&o, 2, "tokenizer /nonexistent/tok.json");
}

#[test]
fn info_json_reports_libtorch() {
    let o = dtrain(&["info", "--json"], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["libtorch"].as_str().unwrap().starts_with("2.11.0"), "{v}");
    assert!(v["torch_threads"].as_i64().unwrap() >= 1);
}
