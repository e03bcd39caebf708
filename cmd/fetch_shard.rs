use std::io::{BufWriter, Write};
use std::path::PathBuf;

use crate::exit::{bad_input, Result};
use dtrain::data::{self, Assignment, Corpus, DataSpec, Source};
use dtrain::hub::client::HubClient;

#[derive(clap::Args, Debug)]
#[command(after_long_help = "Examples:
  dtrain fetch-shard --epoch 3 --uid 7 --rows 2048 --spec-out spec.json | dtrain tokenize --format jsonl -o shard.bin
  dtrain fetch-shard --spec spec.json > rows.jsonl      # a validator re-fetching a miner's rows

Environment: HF_ENDPOINT (default https://huggingface.co), HF_TOKEN, HF_HOME (cache of parquet footers).")]
pub struct FetchShardArgs {
    /// Dataset repository on the Hub
    #[arg(long, default_value = "HuggingFaceFW/fineweb")]
    repo: String,
    /// Dataset config (sample-350BT reads sample/350BT/)
    #[arg(long, default_value = "sample-350BT")]
    config: String,
    /// Dataset revision (branch, tag or commit)
    #[arg(long, default_value = "main")]
    revision: String,
    /// Read local parquet files laid out like the repo instead of the Hub
    #[arg(long)]
    source: Option<PathBuf>,
    /// Seed of the subnet's assignment
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Global epoch
    #[arg(long, default_value_t = 0)]
    epoch: u64,
    /// The miner's uid
    #[arg(long, default_value_t = 0)]
    uid: u64,
    /// Rows to fetch
    #[arg(long, default_value_t = 100)]
    rows: u64,
    /// Rows at the corpus's end held out for the validator's evaluation: never assigned
    #[arg(long, default_value_t = 0)]
    held_out: u64,
    /// Fetch the held-out evaluation rows (the last --held-out rows) instead of an assignment
    #[arg(long, requires = "held_out", conflicts_with_all = ["uid", "spec"])]
    eval: bool,
    /// Fetch exactly the rows of this data spec (ignores --seed/--epoch/--uid/--rows)
    #[arg(long, conflicts_with_all = ["seed", "epoch", "uid", "rows"])]
    spec: Option<PathBuf>,
    /// Write the data spec of the selected rows here
    #[arg(long)]
    spec_out: Option<PathBuf>,
    /// Write the rows (JSON lines) to a file instead of standard output
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Retries per HTTP request (exponential backoff)
    #[arg(long, default_value_t = 5)]
    retries: u32,
    /// Print a JSON summary on stderr
    #[arg(long)]
    json: bool,
}

pub fn run(args: FetchShardArgs) -> Result<()> {
    let spec_in = args.spec.as_deref().map(DataSpec::read).transpose()?;
    let (repo, config, revision) = match &spec_in {
        Some(s) => (s.repo.clone(), s.config.clone(), s.revision.clone()),
        None => (
            args.repo.clone(),
            args.config.clone(),
            args.revision.clone(),
        ),
    };
    let src = match &args.source {
        Some(dir) => {
            if !dir.is_dir() {
                return Err(bad_input!("--source {}: not a folder", dir.display()));
            }
            Source::local(dir, &repo)
        }
        None => Source::hub(HubClient::from_env(args.retries), &repo, &revision)?,
    };
    let corpus = Corpus::open(&src, &data::config_dir(&config))?;
    let spec = match spec_in {
        Some(s) => {
            corpus.check(&s)?;
            s
        }
        None if args.eval => {
            let files = corpus.spec_files();
            let rows = data::held_out_rows(&files, args.held_out)?;
            DataSpec {
                version: 1,
                repo,
                config,
                revision,
                assignment: None,
                files,
                rows,
            }
        }
        None => {
            let a = Assignment {
                seed: args.seed,
                epoch: args.epoch,
                uid: args.uid,
                rows: args.rows,
                held_out: args.held_out,
            };
            let files = corpus.spec_files();
            let rows = data::assign(&repo, &config, &revision, &files, &a)?;
            DataSpec {
                version: 1,
                repo,
                config,
                revision,
                assignment: Some(a),
                files,
                rows,
            }
        }
    };
    if let Some(p) = &args.spec_out {
        dtrain::fsio::write_atomic(p, spec.to_json().as_bytes())?;
    }
    let bar = dtrain::progress::count_bar(spec.rows.len(), "rows");
    let stats = match &args.output {
        Some(p) => {
            let f = dtrain::fsio::AtomicFile::create(p)?;
            let mut w = BufWriter::new(f);
            let stats = corpus.fetch(&src, &spec.rows, |row| {
                bar.inc(1);
                data::write_jsonl(&mut w, &row)
            })?;
            w.into_inner().map_err(|e| e.into_error())?.commit()?;
            stats
        }
        None => {
            let mut w = BufWriter::new(std::io::stdout().lock());
            let stats = corpus.fetch(&src, &spec.rows, |row| {
                bar.inc(1);
                data::write_jsonl(&mut w, &row)
            })?;
            w.flush()?;
            stats
        }
    };
    bar.finish_and_clear();
    // the summary goes to stderr: stdout may be the rows
    if args.json {
        eprintln!("{}", serde_json::to_string(&stats)?);
    } else if !dtrain::log::quiet() {
        eprintln!(
            "{} rows  {} file(s)  {} row group(s)  {:.1} MB fetched  {:.2}s",
            stats.rows,
            stats.files,
            stats.row_groups,
            stats.bytes_fetched as f64 / 1e6,
            stats.seconds
        );
    }
    Ok(())
}
