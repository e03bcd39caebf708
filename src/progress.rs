//! Progress bars on stderr, only when stderr is a terminal (pipelines, timers
//! and `--json` get clean output: the summary line and nothing else).
//!
//! Every bar belongs to one process-wide `MultiProgress`, so log lines
//! (`crate::log`) can be written with the bars suspended and concurrent bars
//! (reduce's phases) stack instead of overwriting each other.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::LazyLock;

use indicatif::{MultiProgress, ProgressBar, ProgressFinish, ProgressStyle};

static BARS: LazyLock<MultiProgress> = LazyLock::new(MultiProgress::new);
static HIDDEN: AtomicBool = AtomicBool::new(false);

/// No bars from now on, even on a terminal (`-q`).
pub fn hide() {
    HIDDEN.store(true, Ordering::Relaxed);
}

fn shown() -> bool {
    std::io::stderr().is_terminal() && !HIDDEN.load(Ordering::Relaxed)
}

fn bar(total: u64, what: &str, template: &str) -> ProgressBar {
    if !shown() {
        return ProgressBar::hidden();
    }
    // a bar dropped early (an error, an aborted attempt) clears itself too
    let pb = ProgressBar::new(total)
        .with_finish(ProgressFinish::AndClear)
        .with_style(
            ProgressStyle::with_template(template)
                .expect("static template")
                .progress_chars("=> "),
        )
        .with_prefix(what.to_string())
        .with_message(what.to_string());
    BARS.add(pb)
}

/// A bar counting bytes, hidden unless stderr is a terminal.
pub fn bytes_bar(total: u64, what: &str) -> ProgressBar {
    bar(
        total,
        what,
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
}

/// A bar counting items, hidden unless stderr is a terminal.
pub fn count_bar(total: u64, what: &str) -> ProgressBar {
    bar(
        total,
        what,
        "{msg} [{bar:30}] {pos}/{len} {per_sec} eta {eta}",
    )
}

/// A bar counting steps whose message says the rate (e.g. tokens/s).
pub fn steps_bar(total: u64, what: &str) -> ProgressBar {
    let pb = bar(
        total,
        what,
        "{prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}",
    );
    pb.set_message("");
    pb
}

/// Runs `f` with the bars hidden (a log line is being written).
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    BARS.suspend(f)
}
