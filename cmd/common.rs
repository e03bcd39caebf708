//! Argument groups shared by several subcommands.

use dtrain::device::DeviceSpec;
use dtrain::model::Precision;
use dtrain::ranges::RangeList;

/// Which sequences of a shard, how long, in what batches, where.
#[derive(clap::Args, Debug, Clone)]
#[cfg_attr(not(dtrain_torch), allow(dead_code))]
pub struct BatchArgs {
    /// Sequence length T (sequence k is tokens [k·T, k·T+T+1))
    #[arg(long, default_value_t = 1024)]
    pub seq_len: usize,
    /// Sequences per micro-batch
    #[arg(long, default_value_t = 8)]
    pub micro_batch: usize,
    /// Sequences to use, e.g. 0-63 or 1,5,9-12 [default: all whole sequences]
    #[arg(long)]
    pub sequences: Option<RangeList>,
    /// auto, cpu, cuda or cuda:N
    #[arg(long, default_value = "auto")]
    pub device: DeviceSpec,
    /// Compute precision of matmuls and attention
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    pub precision: Precision,
    /// ±1 projections per micro-batch gradient sketch in the receipt (0: none)
    #[arg(long, default_value_t = dtrain::sketch::DEFAULT_K)]
    pub sketch_k: usize,
}

#[cfg(dtrain_torch)]
impl BatchArgs {
    pub fn options(&self) -> anyhow::Result<dtrain_torch::train::StepOptions> {
        Ok(dtrain_torch::train::StepOptions {
            seq_len: self.seq_len,
            micro_batch: self.micro_batch,
            sequences: self.sequences.clone(),
            device: dtrain_torch::device::resolve(self.device)?,
            precision: self.precision,
            sketch_k: self.sketch_k,
            miner: None,
            round: None,
        })
    }
}

/// Names the flag (and path) an input came from in its error, so a missing
/// file reads `--tokens nope.bin: No such file or directory`.
pub trait ForFlag<T> {
    fn for_flag(self, flag: &str, path: &std::path::Path) -> anyhow::Result<T>;
}

impl<T, E: Into<anyhow::Error>> ForFlag<T> for Result<T, E> {
    fn for_flag(self, flag: &str, path: &std::path::Path) -> anyhow::Result<T> {
        self.map_err(|e| e.into().context(format!("{flag} {}", path.display())))
    }
}

/// Refuses to write a new folder over an existing one unless `force`.
pub fn check_new_output(path: &std::path::Path, force: bool) -> anyhow::Result<()> {
    if path.exists() && !force {
        return Err(dtrain::exit::Coded::new(
            dtrain::exit::Code::BadInput,
            format!(
                "-o {}: exists already; pass --force to replace it",
                path.display()
            ),
        )
        .into());
    }
    Ok(())
}
