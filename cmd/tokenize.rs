use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use crate::exit::{bad_input, Context, Result};

use crate::common::{ForFlag, FormatArg};
use dtrain::tokenize::Input;
use dtrain::tokenizer::Tokenizer;

#[derive(clap::Args, Debug)]
#[command(after_long_help = "Examples:
  dtrain tokenize --format text book.txt -o book.bin
  dtrain fetch-shard --uid 3 | dtrain tokenize --format jsonl -o shard.bin")]
pub struct TokenizeArgs {
    /// Input files ("-" or none: standard input)
    files: Vec<PathBuf>,
    /// How the input is cut into documents
    #[arg(long, value_enum, default_value_t = FormatArg::Text)]
    format: FormatArg,
    /// Output shard (default: standard output, if it is not a terminal)
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Tokenizer: a tokenizer.json, a folder with vocab.json + merges.txt, or
    /// hf:REPO [default: the embedded GPT-2 / distilgpt2 tokenizer]
    #[arg(long)]
    tokenizer: Option<String>,
    /// Replace invalid UTF-8 instead of failing
    #[arg(long)]
    lossy: bool,
    /// Print a JSON summary line on stderr
    #[arg(long)]
    json: bool,
}

pub fn run(args: TokenizeArgs) -> Result<()> {
    if args.output.is_none() && std::io::stdout().is_terminal() {
        return Err(bad_input!(
            "refusing to write a binary shard to a terminal; use -o FILE or a pipe"
        ));
    }
    let tok = match &args.tokenizer {
        Some(spec) => Tokenizer::load(spec)?,
        None => Tokenizer::gpt2(),
    };
    let mut inputs = Vec::new();
    if args.files.is_empty()
        || args.files.iter().any(|f| f.as_os_str() == "-") && args.files.len() == 1
    {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("reading standard input")?;
        inputs.push(Input {
            name: "<stdin>".into(),
            bytes,
        });
    } else {
        for f in &args.files {
            let bytes = std::fs::read(f).for_flag("input", f)?;
            inputs.push(Input {
                name: f.display().to_string(),
                bytes,
            });
        }
    }
    let (tokens, summary) = dtrain::tokenize::run(&tok, &inputs, args.format.into(), args.lossy)?;
    match &args.output {
        Some(p) => dtrain::tokens::write_file(p, &tokens)?,
        None => dtrain::tokens::write_to(std::io::stdout().lock(), &tokens)?,
    }
    // the summary goes to stderr: stdout may be the shard
    if args.json {
        eprintln!("{}", serde_json::to_string(&summary)?);
    } else if !dtrain::log::quiet() {
        eprintln!(
            "{}  {} documents  {} tokens  {:.2}s",
            &summary.blake3[..16],
            summary.documents,
            summary.tokens,
            summary.seconds
        );
    }
    Ok(())
}
