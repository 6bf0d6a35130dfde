//! The semantic error every backend maps its failures into.

use std::io;

/// Result alias for storage operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, by meaning; the S3 front door maps each variant to one S3 error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bucket does not exist.
    #[error("no such bucket")]
    NoSuchBucket,
    /// A bucket with this name already exists.
    #[error("bucket already exists")]
    BucketAlreadyExists,
    /// The bucket still holds objects.
    #[error("bucket is not empty")]
    BucketNotEmpty,
    /// The object does not exist.
    #[error("no such key")]
    NoSuchKey,
    /// The multipart upload does not exist (never created, completed or aborted).
    #[error("no such upload")]
    NoSuchUpload,
    /// A write condition (`If-Match`, `If-None-Match: *`) did not hold.
    #[error("precondition failed: {0}")]
    PreconditionFailed(&'static str),
    /// The requested byte range lies outside the object.
    #[error("requested range is not satisfiable")]
    InvalidRange,
    /// A completed part is missing or its ETag does not match.
    #[error("invalid part: {0}")]
    InvalidPart(String),
    /// Completed parts are not in ascending order.
    #[error("parts are not in ascending order")]
    InvalidPartOrder,
    /// A non-final part is smaller than the minimum part size.
    #[error("part {part} is {size} bytes, below the minimum of {min}")]
    EntityTooSmall { part: u32, size: u64, min: u64 },
    /// An argument is malformed (bucket name, key, part number, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The bucket name breaks the naming rules.
    #[error("invalid bucket name: {0}")]
    InvalidBucketName(String),
    /// The object key is not acceptable.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// The request body was refused before the object became visible (digest mismatch, ...).
    #[error("body rejected: {0}")]
    Rejected(Box<dyn std::error::Error + Send + Sync>),
    /// Reading the request body failed (client disconnected, malformed framing).
    #[error("reading the request body failed: {0}")]
    Body(#[source] io::Error),
    /// The storage itself failed.
    #[error("storage I/O failed: {0}")]
    Io(#[from] io::Error),
    /// The store cannot be reached or answered with a server error; worth retrying.
    #[error("the storage backend is unavailable: {0}")]
    Unavailable(String),
    /// The store asks to slow down.
    #[error("the storage backend asks to slow down")]
    SlowDown,
    /// The store refused a request it should have accepted (credentials, configuration).
    #[error("the storage backend failed: {0}")]
    Backend(String),
    /// The metadata index failed.
    #[error("metadata index failed: {0}")]
    Index(String),
}

impl From<redb::Error> for Error {
    fn from(e: redb::Error) -> Self {
        Self::Index(e.to_string())
    }
}

macro_rules! index_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Self::Index(e.to_string())
            }
        }
    )*};
}
index_errors!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    serde_json::Error
);
