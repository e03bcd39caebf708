//! Puts an rpath to libtorch's folder into every binary of the crate, so that
//! `target/release/dtrain-torch` runs without LD_LIBRARY_PATH. torch-sys tells us the
//! folder it linked against through the `links = "tch"` metadata channel.
//! The entry is a RUNPATH, so LD_LIBRARY_PATH (as on the CUDA machine) still
//! takes precedence, and `dlopen("libtorch_cuda.so")` from the binary finds the
//! library in the same folder.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // the shared cmd/ sources build the torch commands' `run` only here
    println!("cargo:rustc-cfg=dtrain_torch");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        println!("cargo:rustc-env=DTRAIN_LIBTORCH_LIB={dir}");
    }
    // The version of the libtorch we link, from torch's version.py beside lib/.
    let version = std::env::var("DEP_TCH_LIBTORCH_LIB")
        .ok()
        .and_then(|dir| {
            std::fs::read_to_string(std::path::Path::new(&dir).join("../version.py")).ok()
        })
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("__version__ = "))
                .map(|v| v.trim().trim_matches(['\'', '"']).to_string())
        })
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=DTRAIN_LIBTORCH_VERSION={version}");
}
