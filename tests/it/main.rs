//! The integration tests: one binary (it links once), a module per topic.
//! Every test runs the real `dtrain` binaries, scripts, sockets and files.
//!
//! Tests share two cores: a swarm takes [`common::alone`] and the tests whose
//! deadlines assume the machine is not running a swarm take
//! [`common::beside_others`], so a swarm never runs next to them.

mod cli_errors;
mod cli_fetch;
mod cli_keys;
mod cli_ledger;
mod cli_progress;
mod cli_push;
mod cli_reduce;
mod cli_score;
mod cli_tokenize;
mod cli_train;
mod common;
mod docs_fresh;
mod e2e;
mod hostile_hub;
mod lean;
mod netns_reduce;
mod readme;
mod redteam;
mod redteam_diloco;
mod relay;
mod roster;
mod systemd_units;
