use std::path::PathBuf;

use anyhow::Result;
use dtrain::keys::Key;

#[derive(clap::Args, Debug)]
pub struct KeygenArgs {
    /// Key file to create (mode 0600; never overwritten)
    #[arg(short, long)]
    output: PathBuf,
}

pub fn run(args: KeygenArgs) -> Result<()> {
    let k = Key::generate();
    k.save(&args.output)?;
    println!("{}", k.public().to_hex());
    Ok(())
}
