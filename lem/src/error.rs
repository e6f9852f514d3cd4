//! The one error type of the `lem` crate.

use std::path::PathBuf;

/// Result alias used throughout `lem`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while measuring energy.
///
/// Variants are chosen so a caller can act on them: `NotSupported` means "fall back",
/// `NoDevice` means "nothing to measure", `Io` names the file, `InvalidConfig` names the
/// setting (flag, environment variable or option) that was wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The device cannot do what was asked (e.g. no energy counter, no NVML on this host).
    #[error("{device}: {what} is not supported")]
    NotSupported {
        /// The device (or backend) that lacks the feature.
        device: String,
        /// What was asked for.
        what: String,
    },
    /// No device matches the request.
    #[error("no device: {0}")]
    NoDevice(String),
    /// A device read failed.
    #[error("{device}: {reason}")]
    Device {
        /// The device that failed.
        device: String,
        /// What went wrong, in words.
        reason: String,
    },
    /// A device stopped answering (a GPU fallen off the bus): nothing it would report after
    /// this can be trusted.
    #[error("{device} was lost: {reason}")]
    DeviceLost {
        /// The device.
        device: String,
        /// What failed.
        reason: String,
    },
    /// NVML returned an error.
    #[error("nvml: {context}: {source}")]
    Nvml {
        /// What lem was doing.
        context: String,
        /// The NVML error.
        #[source]
        source: nvml_wrapper::error::NvmlError,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// RAPL energy files exist but this user may not read them.
    #[error("{}: permission denied: RAPL energy counters are readable by root only since Linux 5.10 (run as root or `chmod o+r` the energy_uj files)", path.display())]
    RaplPermission {
        /// The unreadable `energy_uj` file.
        path: PathBuf,
    },
    /// A simulated-device scenario file is invalid.
    #[error("{}: invalid scenario: {reason}", path.display())]
    Scenario {
        /// The scenario file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A result or cache file is not what lem expected.
    #[error("{}: {reason}", path.display())]
    BadFile {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A configuration value (option, flag or environment variable) is invalid.
    #[error("invalid {field}: {reason}")]
    InvalidConfig {
        /// The option, flag or environment variable, e.g. `LEM_INTERVAL_MS`.
        field: String,
        /// Why the value was rejected.
        reason: String,
    },
    /// The idle baseline was required but could not be measured.
    #[error("baseline required but unavailable: {0}")]
    BaselineRequired(String),
    /// An address to serve metrics on could not be listened on (in use, not this host's...).
    #[error("{addr}: cannot listen: {reason}")]
    Listen {
        /// The address asked for.
        addr: String,
        /// Why.
        reason: String,
    },
    /// JSON (de)serialisation failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn config(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidConfig {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn nvml(context: impl Into<String>, source: nvml_wrapper::error::NvmlError) -> Self {
        Error::Nvml {
            context: context.into(),
            source,
        }
    }
}
