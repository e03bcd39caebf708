//! The Hugging Face Hub: where to reach it and who we are.
//!
//! dtrain honours the same variables as the official `huggingface_hub` client:
//! `HF_ENDPOINT` (default <https://huggingface.co>), `HF_TOKEN` (else the token file
//! `$HF_HOME/token`), and `HF_HOME` (default `~/.cache/huggingface`).

pub mod client;
pub mod http;
pub mod publish;
pub mod serve;
pub mod store;

pub use store::{RepoId, RepoType};

use std::path::PathBuf;

pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Endpoint, token and home folder, read from the environment.
#[derive(Clone, Debug)]
pub struct HubEnv {
    pub endpoint: String,
    pub token: Option<String>,
    pub home: PathBuf,
}

impl HubEnv {
    pub fn from_env() -> Self {
        let home = std::env::var_os("HF_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let base = std::env::var_os("XDG_CACHE_HOME")
                    .map(PathBuf::from)
                    .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                    .unwrap_or_else(|| PathBuf::from(".cache"));
                base.join("huggingface")
            });
        let endpoint = std::env::var("HF_ENDPOINT")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string())
            .trim_end_matches('/')
            .to_string();
        let token = std::env::var("HF_TOKEN")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .or_else(|| std::fs::read_to_string(home.join("token")).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        Self {
            endpoint,
            token,
            home,
        }
    }

    /// The hub cache (`$HF_HOME/hub`), shared with the Python client.
    pub fn hub_cache(&self) -> PathBuf {
        self.home.join("hub")
    }

    /// A synchronous hf-hub client configured from this environment.
    pub fn hf_api(&self) -> Result<hf_hub::api::sync::Api, hf_hub::api::sync::ApiError> {
        hf_hub::api::sync::ApiBuilder::from_cache(hf_hub::Cache::new(self.hub_cache()))
            .with_endpoint(self.endpoint.clone())
            .with_token(self.token.clone())
            .with_progress(false)
            .with_retries(3)
            .build()
    }
}
