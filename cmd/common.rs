//! Argument groups shared by several subcommands.

use dtrain::device::DeviceSpec;
use dtrain::model::gpt::Precision;
use dtrain::ranges::RangeList;

/// Which sequences of a shard, how long, in what batches, where.
#[derive(clap::Args, Debug, Clone)]
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

impl BatchArgs {
    pub fn options(&self) -> anyhow::Result<dtrain::train::StepOptions> {
        Ok(dtrain::train::StepOptions {
            seq_len: self.seq_len,
            micro_batch: self.micro_batch,
            sequences: self.sequences.clone(),
            device: dtrain::device::resolve(self.device)?,
            precision: self.precision,
            sketch_k: self.sketch_k,
            miner: None,
            round: None,
        })
    }
}
