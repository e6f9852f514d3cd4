//! The process calls, from the scenario's `processes` block (as `sim:` plays it): the
//! running compute processes, no graphics ones, and per-process SM-utilisation samples with
//! CPU timestamps (Unix µs), newer than the caller's last-seen timestamp. The block's
//! `support` gives NOT_SUPPORTED or NO_PERMISSION; a GPU in MIG mode answers NOT_SUPPORTED
//! for utilisation, as NVML does.

use std::ffi::c_uint;

use nvml_wrapper_sys::bindings::{
    nvmlDevice_t, nvmlProcessInfo_t, nvmlProcessUtilizationSample_t, nvmlReturn_t,
};

use lem::device::{ProcessUnavailable, ProcessUnavailableKind};

use crate::{on_gpu, put, INSUFFICIENT_SIZE, INVALID_ARGUMENT, NOT_SUPPORTED, SUCCESS};

const NO_PERMISSION: nvmlReturn_t = 4;
const NOT_FOUND: nvmlReturn_t = 6;
const UNKNOWN: nvmlReturn_t = 999;
/// `gpuInstanceId` / `computeInstanceId` outside MIG.
const NO_INSTANCE: c_uint = 0xFFFF_FFFF;

fn code(e: &ProcessUnavailable) -> nvmlReturn_t {
    match e.kind {
        ProcessUnavailableKind::NoPermission => NO_PERMISSION,
        ProcessUnavailableKind::Failed => UNKNOWN,
        _ => NOT_SUPPORTED,
    }
}

/// Fill `infos` (room for `*count`) with `list`, NVML's way: INSUFFICIENT_SIZE and the
/// needed count when it does not fit.
///
/// # Safety
/// `count` is valid for reads and writes; `infos` is null or valid for `*count` entries.
unsafe fn fill<T: Copy>(list: &[T], count: *mut c_uint, infos: *mut T) -> nvmlReturn_t {
    if count.is_null() {
        return INVALID_ARGUMENT;
    }
    // SAFETY: non-null, valid per the caller's contract.
    let room = unsafe { *count } as usize;
    // SAFETY: as above.
    unsafe { *count = list.len() as c_uint };
    if list.is_empty() {
        return SUCCESS;
    }
    if infos.is_null() || room < list.len() {
        return INSUFFICIENT_SIZE;
    }
    for (i, p) in list.iter().enumerate() {
        // SAFETY: i < room entries, valid per the caller's contract.
        unsafe { infos.add(i).write(*p) };
    }
    SUCCESS
}

/// # Safety
/// `count` is valid; `infos` is null or valid for `*count` entries.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetComputeRunningProcesses_v3(
    device: nvmlDevice_t,
    count: *mut c_uint,
    infos: *mut nvmlProcessInfo_t,
) -> nvmlReturn_t {
    on_gpu(
        "nvmlDeviceGetComputeRunningProcesses_v3",
        device,
        |_, g, t| match g.sim.processes_at(t) {
            Ok(list) => {
                let list: Vec<nvmlProcessInfo_t> = list
                    .iter()
                    .map(|p| nvmlProcessInfo_t {
                        pid: p.pid,
                        usedGpuMemory: (p.memory_mb.unwrap_or(0.0) * 1024.0 * 1024.0) as u64,
                        gpuInstanceId: NO_INSTANCE,
                        computeInstanceId: NO_INSTANCE,
                    })
                    .collect();
                // SAFETY: the caller's contract.
                unsafe { fill(&list, count, infos) }
            }
            Err(e) if e.kind == ProcessUnavailableKind::NotApplicable => {
                // SAFETY: the caller's contract.
                unsafe { fill::<nvmlProcessInfo_t>(&[], count, infos) }
            }
            Err(e) => code(&e),
        },
    )
}

/// # Safety
/// `count` is valid; `infos` is null or valid for `*count` entries.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetGraphicsRunningProcesses_v3(
    device: nvmlDevice_t,
    count: *mut c_uint,
    infos: *mut nvmlProcessInfo_t,
) -> nvmlReturn_t {
    on_gpu(
        "nvmlDeviceGetGraphicsRunningProcesses_v3",
        device,
        |_, g, t| match g.sim.processes_at(t) {
            Err(e) if e.kind == ProcessUnavailableKind::NoPermission => code(&e),
            // SAFETY: the caller's contract.
            _ => unsafe { fill::<nvmlProcessInfo_t>(&[], count, infos) },
        },
    )
}

/// # Safety
/// `count` is valid; `samples` is null or valid for `*count` entries.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetProcessUtilization(
    device: nvmlDevice_t,
    samples: *mut nvmlProcessUtilizationSample_t,
    count: *mut c_uint,
    last_seen_us: u64,
) -> nvmlReturn_t {
    on_gpu("nvmlDeviceGetProcessUtilization", device, |f, g, t| {
        if g.mig {
            return NOT_SUPPORTED;
        }
        let origin = f.origin_unix_us();
        let since = last_seen_us.saturating_sub(origin);
        match g.sim.process_samples_at(t, since) {
            Ok(batch) if batch.samples.is_empty() => {
                // SAFETY: the caller's contract.
                unsafe { put(count, 0) };
                NOT_FOUND
            }
            Ok(batch) => {
                let list: Vec<nvmlProcessUtilizationSample_t> = batch
                    .samples
                    .iter()
                    .map(|s| nvmlProcessUtilizationSample_t {
                        pid: s.pid,
                        timeStamp: origin + s.t_us,
                        smUtil: s.sm_pct.round() as c_uint,
                        memUtil: 0,
                        encUtil: 0,
                        decUtil: 0,
                    })
                    .collect();
                // SAFETY: the caller's contract.
                unsafe { fill(&list, count, samples) }
            }
            Err(e) if e.kind == ProcessUnavailableKind::NotApplicable => {
                // SAFETY: the caller's contract.
                unsafe { put(count, 0) };
                NOT_FOUND
            }
            Err(e) => code(&e),
        }
    })
}
