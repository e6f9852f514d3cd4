//! The error type of lem-burn.

use std::path::PathBuf;

/// What can go wrong setting up or running the workload.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A weights or config file is not what the model needs.
    #[error("{}: {reason}", path.display())]
    Weights {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An option is invalid.
    #[error("invalid {field}: {reason}")]
    InvalidConfig {
        /// The option or flag.
        field: String,
        /// Why.
        reason: String,
    },
    /// Measurement failed.
    #[error(transparent)]
    Lem(#[from] lem::Error),
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn config(field: &str, reason: impl Into<String>) -> Self {
        Self::InvalidConfig {
            field: field.to_string(),
            reason: reason.into(),
        }
    }
}
