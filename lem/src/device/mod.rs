//! The device layer: one trait for an energy/power source and its implementations
//! (NVML GPUs, simulated GPUs, CPU packages through RAPL), plus the device spec string.

mod nvml;
mod process;
mod rapl;
mod scenario;
mod sensor;
mod sim;
mod sim_process;
mod source;
mod spec;
mod throttle_reasons;
mod visible;

pub use throttle_reasons::ThrottleReasons;

pub use nvml::NvmlDevice;
pub use process::{
    parent_of, GpuProcess, ProcessResult, ProcessSamples, ProcessUnavailable,
    ProcessUnavailableKind, ProcessUtilSample,
};
pub use rapl::{
    host_identity, host_identity_from, is_host_local_id, RaplDomain, DEFAULT_POWERCAP_ROOT,
    HOST_ID_SOURCES,
};
pub use scenario::{Scenario, Segment, SensorSpec};
pub use sensor::SensorProfile;
pub use sim::SimDevice;
pub use sim_process::{PidSpec, ProcessScenario, ProcessSegment, ProcessTrace};
pub use source::{
    DeviceInfo, DeviceKind, EnergySource, PowerSource, Reading, Sample, SharedDevice, Violations,
};
pub use spec::{open_devices, open_devices_with_powercap, DeviceSpec, OpenedDevices};
pub use visible::{resolve_visible_devices, Visible, VisibleEntry};
