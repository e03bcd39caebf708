//! CPU/CUDA selection.
//!
//! The PyPI build of libtorch splits CUDA support into `libtorch_cuda.so`, which
//! nothing in a tch binary links directly: unless that library is loaded, tch's
//! `Cuda::is_available()` is false even on a GPU machine. [`load_cuda`] dlopens it
//! once, by bare name (so the binary's RUNPATH and LD_LIBRARY_PATH both work),
//! with RTLD_NOW|RTLD_GLOBAL so its static initialisers register the CUDA
//! backend with libtorch before the first CUDA call.

use std::ffi::{CStr, CString};
use std::sync::OnceLock;

pub use dtrain::device::{DeviceSpec, Error};

/// libtorch_cuda.so could not be loaded: dlopen's reason.
#[derive(Clone, Debug, thiserror::Error)]
#[error("cannot load libtorch_cuda.so: {0}")]
pub struct NoCudaLibrary(pub String);

static CUDA_LOAD: OnceLock<Result<(), NoCudaLibrary>> = OnceLock::new();

/// Loads libtorch_cuda.so once; `Err` says why it could not be loaded.
pub fn load_cuda() -> Result<(), NoCudaLibrary> {
    CUDA_LOAD
        .get_or_init(|| {
            let name = CString::new("libtorch_cuda.so").unwrap();
            // SAFETY: dlopen with a valid C string; the handle is kept for the process' life.
            let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
            if handle.is_null() {
                // SAFETY: dlerror returns a thread-local C string or null.
                let msg = unsafe { libc::dlerror() };
                let why = if msg.is_null() {
                    "dlopen failed".to_string()
                } else {
                    unsafe { CStr::from_ptr(msg) }
                        .to_string_lossy()
                        .into_owned()
                };
                return Err(NoCudaLibrary(why));
            }
            Ok(())
        })
        .clone()
}

/// Whether a CUDA device is usable (loads the CUDA backend first).
pub fn cuda_available() -> bool {
    load_cuda().is_ok() && tch::Cuda::is_available()
}

pub fn cuda_device_count() -> usize {
    if load_cuda().is_ok() {
        tch::Cuda::device_count().max(0) as usize
    } else {
        0
    }
}

/// Resolves `--device` to a tch device: `auto` prefers CUDA; `cuda` without a
/// GPU is an error, not a silent fall-back to the CPU.
pub fn resolve(spec: DeviceSpec) -> Result<tch::Device, Error> {
    match spec {
        DeviceSpec::Cpu => Ok(tch::Device::Cpu),
        DeviceSpec::Auto => Ok(if cuda_available() {
            tch::Device::Cuda(0)
        } else {
            tch::Device::Cpu
        }),
        DeviceSpec::Cuda(index) => {
            load_cuda().map_err(|e| Error::NoCuda(e.to_string()))?;
            if !tch::Cuda::is_available() {
                return Err(Error::NoCuda(
                    "libtorch_cuda.so loaded, but no CUDA device is visible".into(),
                ));
            }
            let count = cuda_device_count();
            if index >= count {
                return Err(Error::NoSuchGpu { index, count });
            }
            Ok(tch::Device::Cuda(index))
        }
    }
}

/// "cpu" or "cuda", for receipts and tolerances.
pub fn kind_name(d: tch::Device) -> &'static str {
    match d {
        tch::Device::Cuda(_) => "cuda",
        _ => "cpu",
    }
}

/// The CUDA device's name via the CUDA runtime that libtorch_cuda brought in
/// (tch has no call for it). `None` if the symbol is not found.
pub fn cuda_device_name(index: usize) -> Option<String> {
    load_cuda().ok()?;
    type GetProps = unsafe extern "C" fn(*mut u8, libc::c_int) -> libc::c_int;
    for sym in ["cudaGetDeviceProperties_v2", "cudaGetDeviceProperties"] {
        let c = CString::new(sym).unwrap();
        // SAFETY: looking up a symbol in the global namespace.
        let f = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c.as_ptr()) };
        if f.is_null() {
            continue;
        }
        // cudaDeviceProp starts with `char name[256]`; the struct is about 1 KiB,
        // so a generous buffer holds any version of it.
        let mut buf = vec![0u8; 8192];
        // SAFETY: f has the cudaGetDeviceProperties signature; buf outsizes the struct.
        let rc = unsafe {
            std::mem::transmute::<*mut libc::c_void, GetProps>(f)(
                buf.as_mut_ptr(),
                index as libc::c_int,
            )
        };
        if rc != 0 {
            return None;
        }
        let end = buf[..256].iter().position(|&b| b == 0).unwrap_or(256);
        return Some(String::from_utf8_lossy(&buf[..end]).into_owned());
    }
    None
}

/// What `dtrain info` says of a CUDA device beyond its name.
pub struct CudaDeviceInfo {
    pub total_bytes: u64,
    /// Compute capability (major, minor).
    pub capability: (i32, i32),
}

impl CudaDeviceInfo {
    /// bf16 tensor cores arrived with compute capability 8.0 (Ampere).
    pub fn bf16(&self) -> bool {
        self.capability.0 >= 8
    }
}

/// Memory and compute capability of a CUDA device, through the CUDA runtime's
/// stable calls (`cudaMemGetInfo`, `cudaDeviceGetAttribute`).
pub fn cuda_device_info(index: usize) -> Option<CudaDeviceInfo> {
    load_cuda().ok()?;
    type Attr = unsafe extern "C" fn(*mut libc::c_int, libc::c_int, libc::c_int) -> libc::c_int;
    let c = CString::new("cudaDeviceGetAttribute").unwrap();
    // SAFETY: symbol lookup in the global namespace.
    let f = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c.as_ptr()) };
    if f.is_null() {
        return None;
    }
    // cudaDevAttrComputeCapabilityMajor = 75, ...Minor = 76
    let attr = |which: libc::c_int| {
        let mut v: libc::c_int = 0;
        // SAFETY: the CUDA runtime's signature for cudaDeviceGetAttribute.
        let rc = unsafe {
            std::mem::transmute::<*mut libc::c_void, Attr>(f)(&mut v, which, index as libc::c_int)
        };
        (rc == 0).then_some(v)
    };
    let capability = (attr(75)?, attr(76)?);
    let (_, total) = cuda_mem_info(index)?;
    Some(CudaDeviceInfo {
        total_bytes: total,
        capability,
    })
}

/// Bytes in use on a CUDA device (total − free, as cudaMemGetInfo reports it;
/// includes memory libtorch's caching allocator holds), after selecting it.
pub fn cuda_mem_used(index: usize) -> Option<u64> {
    cuda_mem_info(index).map(|(free, total)| total - free)
}

/// (free, total) bytes of a CUDA device, after selecting it.
fn cuda_mem_info(index: usize) -> Option<(u64, u64)> {
    load_cuda().ok()?;
    type SetDev = unsafe extern "C" fn(libc::c_int) -> libc::c_int;
    type MemInfo = unsafe extern "C" fn(*mut usize, *mut usize) -> libc::c_int;
    let sym = |name: &str| {
        let c = CString::new(name).unwrap();
        // SAFETY: symbol lookup in the global namespace.
        let f = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c.as_ptr()) };
        (!f.is_null()).then_some(f)
    };
    let (set, info) = (sym("cudaSetDevice")?, sym("cudaMemGetInfo")?);
    let (mut free, mut total) = (0usize, 0usize);
    // SAFETY: the CUDA runtime's signatures for these two calls.
    unsafe {
        if std::mem::transmute::<*mut libc::c_void, SetDev>(set)(index as libc::c_int) != 0 {
            return None;
        }
        if std::mem::transmute::<*mut libc::c_void, MemInfo>(info)(&mut free, &mut total) != 0 {
            return None;
        }
    }
    Some((free as u64, total as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_always_resolves() {
        assert_eq!(resolve(DeviceSpec::Cpu).unwrap(), tch::Device::Cpu);
        let auto = resolve(DeviceSpec::Auto).unwrap();
        assert_eq!(auto == tch::Device::Cpu, !cuda_available());
    }
}
