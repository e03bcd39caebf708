use std::path::{Path, PathBuf};

use crate::exit::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

#[derive(clap::Args, Debug)]
pub struct GenDocsArgs {
    /// Folder that receives man/ and completions/
    #[arg(long, default_value = ".")]
    out: PathBuf,
}

/// Renders the man pages (dtrain.1 and dtrain-SUB.1) and completions for bash,
/// zsh and fish from the clap definition: they can never disagree with it.
pub fn render() -> Result<Vec<(PathBuf, Vec<u8>)>> {
    let mut files = Vec::new();
    let cmd = crate::Cli::command();
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut buf)?;
    files.push((PathBuf::from("man/man1/dtrain.1"), unfill_examples(&buf)));
    // every command, and every subcommand of one (dtrain-ledger-append.1)
    let mut pages: Vec<(String, clap::Command)> = Vec::new();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("dtrain-{}", sub.get_name());
        pages.push((name.clone(), sub.clone()));
        let leaves = sub
            .get_subcommands()
            .filter(|s| !s.is_hide_set() && s.get_name() != "help");
        for leaf in leaves {
            pages.push((format!("{name}-{}", leaf.get_name()), leaf.clone()));
        }
    }
    for (name, sub) in pages {
        let sub = sub
            .clone()
            .name(name.clone())
            .version(env!("CARGO_PKG_VERSION"));
        let mut buf = Vec::new();
        clap_mangen::Man::new(sub).render(&mut buf)?;
        files.push((
            PathBuf::from(format!("man/man1/{name}.1")),
            unfill_examples(&buf),
        ));
    }
    for (shell, file) in [
        (Shell::Bash, "dtrain.bash"),
        (Shell::Zsh, "_dtrain"),
        (Shell::Fish, "dtrain.fish"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut crate::Cli::command(), "dtrain", &mut buf);
        files.push((PathBuf::from(format!("completions/{file}")), buf));
    }
    Ok(files)
}

/// The examples (clap's after-help, rendered as an EXTRA section) become an
/// EXAMPLES section whose indented command lines are set unfilled (.EX/.EE),
/// so man neither joins, breaks nor hyphenates a command line.
fn unfill_examples(page: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(page);
    let mut out = String::new();
    let (mut in_extra, mut in_example) = (false, false);
    for line in text.lines() {
        if line.starts_with(".SH ") {
            if in_example {
                out.push_str(".EE\n");
                in_example = false;
            }
            in_extra = line == ".SH EXTRA";
            out.push_str(if in_extra { ".SH EXAMPLES" } else { line });
            out.push('\n');
            continue;
        }
        let command = in_extra && line.starts_with("  ");
        if command && !in_example {
            out.push_str(".EX\n");
        } else if !command && in_example {
            out.push_str(".EE\n");
        }
        in_example = command;
        out.push_str(line);
        out.push('\n');
    }
    if in_example {
        out.push_str(".EE\n");
    }
    out.into_bytes()
}

pub fn run(args: GenDocsArgs) -> Result<()> {
    for (rel, bytes) in render()? {
        let dest = args.out.join(&rel);
        std::fs::create_dir_all(dest.parent().unwrap_or(Path::new(".")))?;
        dtrain::fsio::write_atomic(&dest, &bytes)
            .with_context(|| format!("writing {}", dest.display()))?;
        println!("{}", dest.display());
    }
    Ok(())
}
