//! The one error type of the pure-Rust core. `api::errors` maps each
//! variant to its Python exception class with an exhaustive match.
use std::path::PathBuf;

/// Everything that can go wrong in svve-core, with the data a caller needs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A vector or matrix has the wrong shape or a zero norm where one is needed.
    #[error("invalid vector: {0}")]
    InvalidVector(String),
    /// A query or build matrix has a different dimension than expected.
    #[error("dimension mismatch: the index has {expected} dimensions, the input has {got}")]
    DimensionMismatch { expected: usize, got: usize },
    /// NaN or infinity in an input.
    #[error("non-finite value (NaN or Inf) in {what} at row {row}, column {col}")]
    NonFinite {
        what: &'static str,
        row: usize,
        col: usize,
    },
    /// A parameter outside its allowed range.
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidParameter { name: &'static str, reason: String },
    /// No index file at the path.
    #[error("{path}: index not found")]
    IndexNotFound { path: PathBuf },
    /// The file is not a valid index (bad magic, size, checksum, ...).
    #[error("{path}: corrupt index: {reason}")]
    CorruptIndex { path: PathBuf, reason: String },
    /// The file was written by an incompatible format version.
    #[error(
        "{path}: index format version {found} is not supported (this build reads version {supported}); rebuild the index with this version"
    )]
    VersionMismatch {
        path: PathBuf,
        found: u16,
        supported: u16,
    },
    /// An operating-system error while reading or writing a file.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// No collection at the path.
    #[error("{path}: collection not found (create it with Collection.create)")]
    CollectionNotFound { path: PathBuf },
    /// `create` found a collection already there.
    #[error("{path}: a collection already exists here (open it with Collection.open)")]
    CollectionExists { path: PathBuf },
    /// Another writer holds the collection.
    #[error(
        "{path}: the collection is open for writing elsewhere (one writer at a time); open it with readonly=True to search"
    )]
    CollectionLocked { path: PathBuf },
    /// A write through a read-only handle.
    #[error("{path}: the collection was opened read-only; open it without readonly=True to write")]
    ReadOnly { path: PathBuf },
    /// An id given twice in one call, or added when it already exists.
    #[error("duplicate id {id}: {detail}")]
    DuplicateId { id: i64, detail: &'static str },
    /// A filter that is malformed or does not fit the index's attributes;
    /// the message names the part of the filter.
    #[error("invalid filter: {0}")]
    InvalidFilter(String),
    /// A build stopped because its progress callback asked it to.
    #[error("build cancelled")]
    Cancelled,
}

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn param(name: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidParameter {
            name,
            reason: reason.into(),
        }
    }

    pub(crate) fn corrupt(path: &std::path::Path, reason: impl Into<String>) -> Self {
        Error::CorruptIndex {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }

    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
