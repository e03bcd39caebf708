//! What this build of dtrain runs on: libtorch, CUDA, threads, features.

use serde::Serialize;

/// The libtorch version dtrain was compiled against (from torch's version.py).
pub const LIBTORCH_BUILT: &str = env!("DTRAIN_LIBTORCH_VERSION");

#[derive(Debug, Serialize)]
pub struct Info {
    pub dtrain: String,
    pub libtorch: String,
    pub libtorch_path: Option<String>,
    pub cuda_available: bool,
    pub cuda_devices: Vec<String>,
    pub cuda_load: String,
    pub cudnn: Option<i64>,
    pub torch_threads: i32,
    pub rayon_threads: usize,
    /// Vector extension of the hot loops (reduce, codecs): avx512, avx2 or baseline.
    pub simd: &'static str,
    pub features: Vec<String>,
}

/// The folder of the libtorch_cpu.so this process actually loaded.
fn loaded_libtorch() -> Option<std::path::PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.ends_with("/libtorch_cpu.so"))
        .map(|p| std::path::Path::new(p).parent().unwrap().to_path_buf())
}

/// The version written beside a libtorch folder (`torch/version.py`), if any.
fn version_near(lib: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(lib.parent()?.join("version.py")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("__version__ = "))
        .map(|v| v.trim().trim_matches(['\'', '"']).to_string())
}

pub fn collect() -> Info {
    // Touch libtorch first so its library is mapped.
    let torch_threads = tch::get_num_threads();
    let lib = loaded_libtorch();
    let runtime = lib.as_deref().and_then(version_near);
    let libtorch = match runtime {
        Some(v) if v == LIBTORCH_BUILT => v,
        Some(v) => format!("{v} (built against {LIBTORCH_BUILT})"),
        None => LIBTORCH_BUILT.to_string(),
    };
    let cuda_load = match crate::device::load_cuda() {
        Ok(()) => "libtorch_cuda.so loaded".to_string(),
        Err(e) => e.to_string(),
    };
    let cuda_available = crate::device::cuda_available();
    let cuda_devices = (0..crate::device::cuda_device_count())
        .map(|i| {
            let name = crate::device::cuda_device_name(i)
                .map_or(format!("cuda:{i}"), |n| format!("cuda:{i} {n}"));
            match crate::device::cuda_device_info(i) {
                Some(d) => format!(
                    "{name}, {:.1} GiB, compute {}.{}, bf16 {}",
                    d.total_bytes as f64 / (1u64 << 30) as f64,
                    d.capability.0,
                    d.capability.1,
                    if d.bf16() { "yes" } else { "no" }
                ),
                None => name,
            }
        })
        .collect();
    let mut features = vec![];
    for (name, on) in [
        ("openmp", tch::utils::has_openmp()),
        ("mkl", tch::utils::has_mkl()),
        ("mkldnn", tch::utils::has_mkldnn()),
        ("cuda-build", tch::utils::has_cuda()),
    ] {
        if on {
            features.push(name.to_string());
        }
    }
    Info {
        dtrain: env!("CARGO_PKG_VERSION").to_string(),
        libtorch,
        libtorch_path: lib.map(|p| p.display().to_string()),
        cuda_available,
        cuda_devices,
        cuda_load,
        cudnn: if cuda_available {
            Some(tch::utils::version_cudnn())
        } else {
            None
        },
        torch_threads,
        rayon_threads: rayon::current_num_threads(),
        simd: dtrain::simd::name(),
        features,
    }
}
