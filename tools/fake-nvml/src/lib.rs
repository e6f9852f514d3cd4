//! A driver-level NVML simulator: a shared library with NVML's C interface, driven by a lem
//! scenario file, so lem's NVML code runs in CI exactly as it runs on a GPU node.
//!
//! Tests link `libfake_nvml.so` as `libnvidia-ml.so.1` in a private directory, put that
//! directory on `LD_LIBRARY_PATH` and name the scenario in `LEM_FAKE_NVML_SCENARIO`; without
//! that variable `nvmlInit_v2` answers `NVML_ERROR_DRIVER_NOT_LOADED`. `LEM_FAKE_NVML_LOG`
//! names an optional call log (`t_s  function  gpu  return_code`, tab-separated).
//!
//! The scenario is lem's `sim:` format (the same file gives the same trace) with two optional
//! blocks: `nvml` (architecture behaviour, identities, versions; see [`config::NvmlBlock`])
//! and `faults` (return codes by time, call count or period, lost GPUs, frozen or reset
//! counters, added latency; see [`config::FaultSpec`]).
//!
//! Structures and codes are `nvml.h`'s, through nvml-wrapper-sys's bindings; units are NVML's
//! (mJ, mW, ns, bytes). A symbol an old driver would lack answers `FUNCTION_NOT_FOUND` when
//! the scenario says so. Every entry point catches panics: none crosses the C boundary.
#![allow(non_snake_case)]

pub mod config;
pub mod processes;
pub mod state;

use std::ffi::{c_char, c_int, c_uint, c_ulonglong, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use nvml_wrapper_sys::bindings::{
    field_id, nvmlDevice_t, nvmlFieldValue_t, nvmlMemory_t, nvmlMemory_v2_t, nvmlPciInfo_t,
    nvmlPerfPolicyType_t, nvmlReturn_t, nvmlTemperatureSensors_t, nvmlTemperature_t,
    nvmlUtilization_t, nvmlValue_t, nvmlViolationTime_t,
};

use lem::device::EnergySource;
use state::{Fake, Gpu, Handle};

pub(crate) const SUCCESS: nvmlReturn_t = 0;
const UNINITIALIZED: nvmlReturn_t = 1;
pub(crate) const INVALID_ARGUMENT: nvmlReturn_t = 2;
pub(crate) const NOT_SUPPORTED: nvmlReturn_t = 3;
pub(crate) const INSUFFICIENT_SIZE: nvmlReturn_t = 7;
const DRIVER_NOT_LOADED: nvmlReturn_t = 9;
const FUNCTION_NOT_FOUND: nvmlReturn_t = 13;
const ARGUMENT_VERSION_MISMATCH: nvmlReturn_t = 25;
const NOT_FOUND: nvmlReturn_t = 6;
const UNKNOWN: nvmlReturn_t = 999;

static DRIVER: OnceLock<Result<Option<Fake>, String>> = OnceLock::new();
static INITS: AtomicU32 = AtomicU32::new(0);

fn active() -> Option<&'static Fake> {
    if INITS.load(Ordering::Acquire) == 0 {
        return None;
    }
    match DRIVER.get() {
        Some(Ok(Some(f))) => Some(f),
        _ => None,
    }
}

/// Run a call: panics become UNKNOWN, faults apply, the call is logged.
fn call(
    function: &'static str,
    gpu: Option<u32>,
    body: impl FnOnce(&'static Fake, f64) -> nvmlReturn_t,
) -> nvmlReturn_t {
    let Some(fake) = active() else {
        return UNINITIALIZED;
    };
    let t = fake.now();
    let rc = catch_unwind(AssertUnwindSafe(|| match fake.fault(function, gpu, t) {
        Some(code) => code,
        None => body(fake, t),
    }))
    .unwrap_or(UNKNOWN);
    fake.log(function, gpu, t, rc);
    rc
}

/// A call on a device handle (a GPU's; MIG handles only where `mig_ok`).
pub(crate) fn on_gpu(
    function: &'static str,
    device: nvmlDevice_t,
    body: impl FnOnce(&'static Fake, &'static Gpu, f64) -> nvmlReturn_t,
) -> nvmlReturn_t {
    let Some(fake) = active() else {
        return UNINITIALIZED;
    };
    let Some(h) = fake.handle(device as *const Handle) else {
        return INVALID_ARGUMENT;
    };
    if h.mig.is_some() {
        // A MIG device handle answers identity queries only (below); measurements are the
        // parent GPU's.
        return NOT_SUPPORTED;
    }
    let gpu = h.gpu;
    call(function, Some(gpu), |fake, t| {
        match fake.gpus.get(gpu as usize) {
            Some(g) => body(fake, g, t),
            None => INVALID_ARGUMENT,
        }
    })
}

/// # Safety
/// `p` is null or valid for a write of `T`.
pub(crate) unsafe fn put<T>(p: *mut T, v: T) -> nvmlReturn_t {
    if p.is_null() {
        return INVALID_ARGUMENT;
    }
    // SAFETY: non-null and, per the caller's contract, valid for writes.
    unsafe { p.write(v) };
    SUCCESS
}

/// # Safety
/// `buf` is null or valid for `len` bytes.
unsafe fn put_str(s: &str, buf: *mut c_char, len: c_uint) -> nvmlReturn_t {
    if buf.is_null() {
        return INVALID_ARGUMENT;
    }
    let bytes = s.as_bytes();
    if bytes.len() + 1 > len as usize {
        return INSUFFICIENT_SIZE;
    }
    // SAFETY: `buf` holds `len` > bytes.len() bytes; the ranges cannot overlap (ours is a
    // Rust string).
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr().cast::<c_char>(), buf, bytes.len());
        buf.add(bytes.len()).write(0);
    }
    SUCCESS
}

fn init(function: &'static str) -> nvmlReturn_t {
    catch_unwind(|| init_inner(function)).unwrap_or(UNKNOWN)
}

fn init_inner(function: &'static str) -> nvmlReturn_t {
    let driver = DRIVER.get_or_init(Fake::from_env);
    match driver {
        Ok(None) => DRIVER_NOT_LOADED,
        Err(msg) => {
            eprintln!("fake-nvml: {msg}");
            UNKNOWN
        }
        Ok(Some(fake)) => {
            let t = fake.now();
            let rc = catch_unwind(AssertUnwindSafe(|| fake.fault(function, None, t)))
                .unwrap_or(Some(UNKNOWN))
                .unwrap_or(SUCCESS);
            if rc == SUCCESS {
                INITS.fetch_add(1, Ordering::AcqRel);
            }
            fake.log(function, None, t, rc);
            rc
        }
    }
}

/// Initialise the fake driver (reads the scenario on first use).
#[no_mangle]
pub extern "C" fn nvmlInit_v2() -> nvmlReturn_t {
    init("nvmlInit_v2")
}

/// The original name of [`nvmlInit_v2`].
#[no_mangle]
pub extern "C" fn nvmlInit() -> nvmlReturn_t {
    init("nvmlInit")
}

/// [`nvmlInit_v2`] with flags (ignored), as nvidia-ml-py calls it.
#[no_mangle]
pub extern "C" fn nvmlInitWithFlags(_flags: c_uint) -> nvmlReturn_t {
    init("nvmlInitWithFlags")
}

/// Balance one successful initialisation.
#[no_mangle]
pub extern "C" fn nvmlShutdown() -> nvmlReturn_t {
    let rc = call("nvmlShutdown", None, |_, _| SUCCESS);
    if rc == SUCCESS {
        INITS.fetch_sub(1, Ordering::AcqRel);
    }
    rc
}

/// Not NVML: the fake driver's clock (seconds since its first initialisation), so a test
/// can place lem's windows on the scenario's trace exactly. -1 before initialisation.
#[no_mangle]
pub extern "C" fn fake_nvml_time_s() -> f64 {
    match DRIVER.get() {
        Some(Ok(Some(f))) => f.now(),
        _ => -1.0,
    }
}

/// A static description of a return code.
#[no_mangle]
pub extern "C" fn nvmlErrorString(result: nvmlReturn_t) -> *const c_char {
    let s: &'static CStr = match result {
        0 => c"Success",
        1 => c"Uninitialized",
        2 => c"Invalid Argument",
        3 => c"Not Supported",
        4 => c"Insufficient Permissions",
        6 => c"Not Found",
        9 => c"Driver Not Loaded",
        13 => c"Function Not Found",
        15 => c"GPU is lost",
        18 => c"RM has detected an NVML/RM version mismatch",
        _ => c"Unknown Error",
    };
    s.as_ptr()
}

/// # Safety
/// `version` is valid for `length` bytes.
#[no_mangle]
pub unsafe extern "C" fn nvmlSystemGetDriverVersion(
    version: *mut c_char,
    length: c_uint,
) -> nvmlReturn_t {
    // SAFETY: the caller's contract.
    call("nvmlSystemGetDriverVersion", None, |f, _| unsafe {
        put_str(&f.driver_version, version, length)
    })
}

/// # Safety
/// `version` is valid for `length` bytes.
#[no_mangle]
pub unsafe extern "C" fn nvmlSystemGetNVMLVersion(
    version: *mut c_char,
    length: c_uint,
) -> nvmlReturn_t {
    // SAFETY: the caller's contract.
    call("nvmlSystemGetNVMLVersion", None, |f, _| unsafe {
        put_str(&format!("13.{}", f.driver_version), version, length)
    })
}

/// # Safety
/// `v` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlSystemGetCudaDriverVersion_v2(v: *mut c_int) -> nvmlReturn_t {
    // SAFETY: the caller's contract.
    call("nvmlSystemGetCudaDriverVersion_v2", None, |f, _| unsafe {
        put(v, f.cuda_version)
    })
}

/// # Safety
/// `v` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlSystemGetCudaDriverVersion(v: *mut c_int) -> nvmlReturn_t {
    // SAFETY: the caller's contract.
    call("nvmlSystemGetCudaDriverVersion", None, |f, _| unsafe {
        put(v, f.cuda_version)
    })
}

/// # Safety
/// `count` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetCount_v2(count: *mut c_uint) -> nvmlReturn_t {
    // SAFETY: the caller's contract.
    call("nvmlDeviceGetCount_v2", None, |f, _| unsafe {
        put(count, f.gpus.len() as c_uint)
    })
}

/// # Safety
/// `device` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetHandleByIndex_v2(
    index: c_uint,
    device: *mut nvmlDevice_t,
) -> nvmlReturn_t {
    call("nvmlDeviceGetHandleByIndex_v2", Some(index), |f, _| {
        match f.handles.get(index as usize).filter(|h| h.mig.is_none()) {
            // SAFETY: the caller's contract.
            Some(h) => unsafe { put(device, h as *const Handle as nvmlDevice_t) },
            None => INVALID_ARGUMENT,
        }
    })
}

/// # Safety
/// `uuid` is a C string, `device` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetHandleByUUID(
    uuid: *const c_char,
    device: *mut nvmlDevice_t,
) -> nvmlReturn_t {
    if uuid.is_null() {
        return INVALID_ARGUMENT;
    }
    // SAFETY: non-null, NUL-terminated per the caller's contract.
    let want = unsafe { CStr::from_ptr(uuid) }
        .to_string_lossy()
        .into_owned();
    let Some(fake) = active() else {
        return UNINITIALIZED;
    };
    let found = fake.handles.iter().find(|h| {
        let Some(g) = fake.gpus.get(h.gpu as usize) else {
            return false;
        };
        match h.mig {
            None => g.uuid == want,
            Some(k) => g.mig_uuids.get(k as usize) == Some(&want),
        }
    });
    let gpu = found.map(|h| h.gpu);
    call("nvmlDeviceGetHandleByUUID", gpu, |_, _| match found {
        // SAFETY: the caller's contract.
        Some(h) => unsafe { put(device, h as *const Handle as nvmlDevice_t) },
        None => NOT_FOUND,
    })
}

/// # Safety
/// `name` is valid for `length` bytes.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetName(
    device: nvmlDevice_t,
    name: *mut c_char,
    length: c_uint,
) -> nvmlReturn_t {
    // SAFETY: the caller's contract.
    on_gpu("nvmlDeviceGetName", device, |_, g, _| unsafe {
        put_str(&g.name, name, length)
    })
}

/// # Safety
/// `uuid` is valid for `length` bytes.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetUUID(
    device: nvmlDevice_t,
    uuid: *mut c_char,
    length: c_uint,
) -> nvmlReturn_t {
    let Some(fake) = active() else {
        return UNINITIALIZED;
    };
    let Some(h) = fake.handle(device as *const Handle) else {
        return INVALID_ARGUMENT;
    };
    let (gpu, mig) = (h.gpu, h.mig);
    call("nvmlDeviceGetUUID", Some(gpu), |f, _| {
        let g = &f.gpus[gpu as usize];
        let text = match mig {
            None => g.uuid.as_str(),
            Some(k) => g.mig_uuids.get(k as usize).map_or("", String::as_str),
        };
        // SAFETY: the caller's contract.
        unsafe { put_str(text, uuid, length) }
    })
}

/// # Safety
/// `pci` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetPciInfo_v3(
    device: nvmlDevice_t,
    pci: *mut nvmlPciInfo_t,
) -> nvmlReturn_t {
    on_gpu("nvmlDeviceGetPciInfo_v3", device, |_, g, _| {
        let mut p = nvmlPciInfo_t {
            busIdLegacy: [0; 16],
            domain: 0,
            bus: 0,
            device: 0,
            pciDeviceId: 0x2330_10de,
            pciSubSystemId: 0x16c1_10de,
            busId: [0; 32],
        };
        let id = g.pci_bus_id.as_bytes();
        for (dst, src) in p.busId.iter_mut().zip(id.iter().take(31)) {
            *dst = *src as c_char;
        }
        let legacy = g.pci_bus_id.get(4..).unwrap_or("").as_bytes();
        for (dst, src) in p.busIdLegacy.iter_mut().zip(legacy.iter().take(15)) {
            *dst = *src as c_char;
        }
        let parts: Vec<&str> = g.pci_bus_id.split([':', '.']).collect();
        let hex = |i: usize| {
            parts
                .get(i)
                .and_then(|s| u32::from_str_radix(s, 16).ok())
                .unwrap_or(0)
        };
        p.domain = hex(0);
        p.bus = hex(1);
        p.device = hex(2);
        // SAFETY: the caller's contract.
        unsafe { put(pci, p) }
    })
}

/// # Safety
/// `major` and `minor` are valid for writes.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetCudaComputeCapability(
    device: nvmlDevice_t,
    major: *mut c_int,
    minor: *mut c_int,
) -> nvmlReturn_t {
    on_gpu("nvmlDeviceGetCudaComputeCapability", device, |_, g, _| {
        if major.is_null() || minor.is_null() {
            return INVALID_ARGUMENT;
        }
        // SAFETY: both non-null, valid per the caller's contract.
        unsafe {
            put(major, g.cc.0);
            put(minor, g.cc.1)
        }
    })
}

/// # Safety
/// `arch` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetArchitecture(
    device: nvmlDevice_t,
    arch: *mut c_uint,
) -> nvmlReturn_t {
    // SAFETY: the caller's contract.
    on_gpu("nvmlDeviceGetArchitecture", device, |_, g, _| unsafe {
        put(arch, g.arch)
    })
}

const MIB: f64 = 1024.0 * 1024.0;

fn memory(g: &Gpu, t: f64) -> (u64, u64) {
    let total = (g.memory_total_mib * MIB) as u64;
    let used = Fake::reading(g, t).memory_used_mb.unwrap_or(0.0);
    (total, ((used * MIB) as u64).min(total))
}

/// # Safety
/// `mem` is valid for a write; its `version` is stamped by the caller.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMemoryInfo_v2(
    device: nvmlDevice_t,
    mem: *mut nvmlMemory_v2_t,
) -> nvmlReturn_t {
    on_gpu("nvmlDeviceGetMemoryInfo_v2", device, |_, g, t| {
        if mem.is_null() {
            return INVALID_ARGUMENT;
        }
        let want = (std::mem::size_of::<nvmlMemory_v2_t>() | (2 << 24)) as c_uint;
        // SAFETY: non-null, valid per the caller's contract.
        let m = unsafe { &mut *mem };
        if m.version != want {
            return ARGUMENT_VERSION_MISMATCH;
        }
        let (total, used) = memory(g, t);
        m.total = total;
        m.reserved = 0;
        m.used = used;
        m.free = total - used;
        SUCCESS
    })
}

/// # Safety
/// `mem` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMemoryInfo(
    device: nvmlDevice_t,
    mem: *mut nvmlMemory_t,
) -> nvmlReturn_t {
    on_gpu("nvmlDeviceGetMemoryInfo", device, |_, g, t| {
        let (total, used) = memory(g, t);
        let m = nvmlMemory_t {
            total,
            free: total - used,
            used,
        };
        // SAFETY: the caller's contract.
        unsafe { put(mem, m) }
    })
}

/// # Safety
/// `limit` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetEnforcedPowerLimit(
    device: nvmlDevice_t,
    limit: *mut c_uint,
) -> nvmlReturn_t {
    // SAFETY: the caller's contract.
    on_gpu(
        "nvmlDeviceGetEnforcedPowerLimit",
        device,
        |_, g, _| unsafe { put(limit, (g.power_limit_w * 1000.0) as c_uint) },
    )
}

/// # Safety
/// `current` and `pending` are valid for writes.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMigMode(
    device: nvmlDevice_t,
    current: *mut c_uint,
    pending: *mut c_uint,
) -> nvmlReturn_t {
    on_gpu("nvmlDeviceGetMigMode", device, |_, g, _| {
        if g.arch < 7 {
            return NOT_SUPPORTED;
        }
        if current.is_null() || pending.is_null() {
            return INVALID_ARGUMENT;
        }
        // SAFETY: both non-null, valid per the caller's contract.
        unsafe {
            put(current, c_uint::from(g.mig));
            put(pending, c_uint::from(g.mig))
        }
    })
}

/// # Safety
/// `is_mig` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceIsMigDeviceHandle(
    device: nvmlDevice_t,
    is_mig: *mut c_uint,
) -> nvmlReturn_t {
    let Some(fake) = active() else {
        return UNINITIALIZED;
    };
    let Some(h) = fake.handle(device as *const Handle) else {
        return INVALID_ARGUMENT;
    };
    let mig = h.mig.is_some();
    // SAFETY: the caller's contract.
    call("nvmlDeviceIsMigDeviceHandle", Some(h.gpu), |_, _| unsafe {
        put(is_mig, c_uint::from(mig))
    })
}

/// # Safety
/// `parent` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetDeviceHandleFromMigDeviceHandle(
    mig_device: nvmlDevice_t,
    parent: *mut nvmlDevice_t,
) -> nvmlReturn_t {
    let Some(fake) = active() else {
        return UNINITIALIZED;
    };
    let Some(h) = fake.handle(mig_device as *const Handle) else {
        return INVALID_ARGUMENT;
    };
    let (gpu, mig) = (h.gpu, h.mig);
    call(
        "nvmlDeviceGetDeviceHandleFromMigDeviceHandle",
        Some(gpu),
        |f, _| match (mig, f.handles.get(gpu as usize)) {
            // SAFETY: the caller's contract.
            (Some(_), Some(p)) => unsafe { put(parent, p as *const Handle as nvmlDevice_t) },
            _ => INVALID_ARGUMENT,
        },
    )
}

/// # Safety
/// `energy` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetTotalEnergyConsumption(
    device: nvmlDevice_t,
    energy: *mut c_ulonglong,
) -> nvmlReturn_t {
    on_gpu("nvmlDeviceGetTotalEnergyConsumption", device, |f, g, t| {
        if !g.counter {
            return NOT_SUPPORTED;
        }
        let idx = g.sim.info().index;
        // SAFETY: the caller's contract.
        unsafe { put(energy, f.counter_mj(g, idx, t)) }
    })
}

/// # Safety
/// `power` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetPowerUsage(
    device: nvmlDevice_t,
    power: *mut c_uint,
) -> nvmlReturn_t {
    // SAFETY: the caller's contract.
    on_gpu("nvmlDeviceGetPowerUsage", device, |_, g, t| unsafe {
        put(power, Fake::power_usage_mw(g, t))
    })
}

/// # Safety
/// `values` is valid for `count` entries whose `fieldId` the caller set.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetFieldValues(
    device: nvmlDevice_t,
    count: c_int,
    values: *mut nvmlFieldValue_t,
) -> nvmlReturn_t {
    on_gpu("nvmlDeviceGetFieldValues", device, |_, g, t| {
        let Ok(n) = usize::try_from(count) else {
            return INVALID_ARGUMENT;
        };
        if values.is_null() || n == 0 {
            return INVALID_ARGUMENT;
        }
        // SAFETY: non-null and valid for `n` entries per the caller's contract.
        let out = unsafe { std::slice::from_raw_parts_mut(values, n) };
        let mut filled = 0;
        for v in out.iter_mut() {
            let mw = match v.fieldId {
                field_id::NVML_FI_DEV_POWER_INSTANT if g.instant_field => {
                    Some(Fake::power_instant_mw(g, t))
                }
                field_id::NVML_FI_DEV_POWER_AVERAGE if g.usage_averaged => {
                    Some(Fake::power_usage_mw(g, t))
                }
                _ => None,
            };
            v.timestamp = Fake::unix_us() as i64;
            v.latencyUsec = 0;
            match mw {
                Some(mw) => {
                    v.valueType = 1; // NVML_VALUE_TYPE_UNSIGNED_INT
                    v.nvmlReturn = SUCCESS;
                    v.value = nvmlValue_t { uiVal: mw };
                    filled += 1;
                }
                None => {
                    v.nvmlReturn = NOT_SUPPORTED;
                }
            }
        }
        if filled > 0 {
            SUCCESS
        } else {
            NOT_SUPPORTED
        }
    })
}

/// # Safety
/// `util` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetUtilizationRates(
    device: nvmlDevice_t,
    util: *mut nvmlUtilization_t,
) -> nvmlReturn_t {
    on_gpu("nvmlDeviceGetUtilizationRates", device, |_, g, t| {
        // a trace with no utilisation answers that it cannot say, never a made-up 0 %
        let Some(u) = Fake::reading(g, t).utilisation_pct else {
            return NOT_SUPPORTED;
        };
        let u = u.round() as c_uint;
        // SAFETY: the caller's contract.
        unsafe {
            put(
                util,
                nvmlUtilization_t {
                    gpu: u,
                    memory: u / 2,
                },
            )
        }
    })
}

/// The trace's temperature; `None` (answered NOT_SUPPORTED, never 0 °C) where it has none.
fn temperature(g: &Gpu, t: f64) -> Option<f64> {
    Fake::reading(g, t).temperature_c.map(f64::round)
}

/// # Safety
/// `temp` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetTemperature(
    device: nvmlDevice_t,
    sensor: nvmlTemperatureSensors_t,
    temp: *mut c_uint,
) -> nvmlReturn_t {
    on_gpu("nvmlDeviceGetTemperature", device, |_, g, t| {
        if !g.temp_legacy {
            return FUNCTION_NOT_FOUND;
        }
        if sensor != 0 {
            return INVALID_ARGUMENT;
        }
        let Some(c) = temperature(g, t) else {
            return NOT_SUPPORTED;
        };
        // SAFETY: the caller's contract.
        unsafe { put(temp, c as c_uint) }
    })
}

/// # Safety
/// `temp` is valid for a write; its `version` is stamped by the caller.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetTemperatureV(
    device: nvmlDevice_t,
    temp: *mut nvmlTemperature_t,
) -> nvmlReturn_t {
    on_gpu("nvmlDeviceGetTemperatureV", device, |_, g, t| {
        if !g.temp_v {
            return FUNCTION_NOT_FOUND;
        }
        if temp.is_null() {
            return INVALID_ARGUMENT;
        }
        // SAFETY: non-null, valid per the caller's contract.
        let v = unsafe { &mut *temp };
        let want = (std::mem::size_of::<nvmlTemperature_t>() | (1 << 24)) as c_uint;
        if v.version != want {
            return ARGUMENT_VERSION_MISMATCH;
        }
        if v.sensorType != 0 {
            return INVALID_ARGUMENT;
        }
        let Some(c) = temperature(g, t) else {
            return NOT_SUPPORTED;
        };
        v.temperature = c as c_int;
        SUCCESS
    })
}

fn clocks(g: &Gpu, t: f64) -> c_ulonglong {
    Fake::reading(g, t).throttle.map_or(0, |r| r.bits())
}

/// # Safety
/// `reasons` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetCurrentClocksEventReasons(
    device: nvmlDevice_t,
    reasons: *mut c_ulonglong,
) -> nvmlReturn_t {
    on_gpu(
        "nvmlDeviceGetCurrentClocksEventReasons",
        device,
        |_, g, t| {
            if !g.clocks_new {
                return FUNCTION_NOT_FOUND;
            }
            // SAFETY: the caller's contract.
            unsafe { put(reasons, clocks(g, t)) }
        },
    )
}

/// # Safety
/// `reasons` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetCurrentClocksThrottleReasons(
    device: nvmlDevice_t,
    reasons: *mut c_ulonglong,
) -> nvmlReturn_t {
    on_gpu(
        "nvmlDeviceGetCurrentClocksThrottleReasons",
        device,
        |_, g, t| {
            if !g.clocks_old {
                return FUNCTION_NOT_FOUND;
            }
            // SAFETY: the caller's contract.
            unsafe { put(reasons, clocks(g, t)) }
        },
    )
}

/// # Safety
/// `time` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetViolationStatus(
    device: nvmlDevice_t,
    policy: nvmlPerfPolicyType_t,
    time: *mut nvmlViolationTime_t,
) -> nvmlReturn_t {
    on_gpu("nvmlDeviceGetViolationStatus", device, |_, g, t| {
        let reasons = match policy {
            0 => g.policy_power,
            1 => g.policy_thermal,
            _ => None,
        };
        let Some(reasons) = reasons else {
            return NOT_SUPPORTED;
        };
        let v = nvmlViolationTime_t {
            referenceTime: Fake::unix_us(),
            violationTime: Fake::violation_ns(g, reasons, t),
        };
        // SAFETY: the caller's contract.
        unsafe { put(time, v) }
    })
}
