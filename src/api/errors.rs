//! Maps every core error to its class in `svve_core.exceptions`, with one
//! exhaustive match: a new variant does not compile until it is mapped.
use pyo3::import_exception;
use pyo3::PyErr;

use crate::error::Error;

import_exception!(svve_core.exceptions, InvalidVectorError);
import_exception!(svve_core.exceptions, DimensionMismatchError);
import_exception!(svve_core.exceptions, NonFiniteError);
import_exception!(svve_core.exceptions, InvalidParameterError);
import_exception!(svve_core.exceptions, IndexNotFoundError);
import_exception!(svve_core.exceptions, CorruptIndexError);
import_exception!(svve_core.exceptions, VersionMismatchError);
import_exception!(svve_core.exceptions, IndexIOError);
import_exception!(svve_core.exceptions, BuildCancelledError);
import_exception!(svve_core.exceptions, InternalError);
import_exception!(svve_core.exceptions, CollectionNotFoundError);
import_exception!(svve_core.exceptions, CollectionExistsError);
import_exception!(svve_core.exceptions, CollectionLockedError);
import_exception!(svve_core.exceptions, ReadOnlyCollectionError);
import_exception!(svve_core.exceptions, DuplicateIdError);
import_exception!(svve_core.exceptions, InvalidFilterError);

impl From<Error> for PyErr {
    fn from(e: Error) -> PyErr {
        let msg = e.to_string();
        match e {
            Error::InvalidVector(_) => InvalidVectorError::new_err(msg),
            Error::DimensionMismatch { .. } => DimensionMismatchError::new_err(msg),
            Error::NonFinite { .. } => NonFiniteError::new_err(msg),
            Error::InvalidParameter { .. } => InvalidParameterError::new_err(msg),
            Error::IndexNotFound { .. } => IndexNotFoundError::new_err(msg),
            Error::CorruptIndex { .. } => CorruptIndexError::new_err(msg),
            Error::VersionMismatch { .. } => VersionMismatchError::new_err(msg),
            Error::Io { .. } => IndexIOError::new_err(msg),
            Error::Cancelled => BuildCancelledError::new_err(msg),
            Error::CollectionNotFound { .. } => CollectionNotFoundError::new_err(msg),
            Error::CollectionExists { .. } => CollectionExistsError::new_err(msg),
            Error::CollectionLocked { .. } => CollectionLockedError::new_err(msg),
            Error::ReadOnly { .. } => ReadOnlyCollectionError::new_err(msg),
            Error::DuplicateId { .. } => DuplicateIdError::new_err(msg),
            Error::InvalidFilter(_) => InvalidFilterError::new_err(msg),
        }
    }
}
