//! Drive's storage layer: S3-style buckets and objects over a pluggable backend.
//!
//! The crate knows objects, not HTTP. [`Backend`] is the one trait every store implements;
//! [`BucketName`] and [`ObjectKey`] are validated names that are the only way to address data;
//! [`Error`] is the semantic error every backend maps its own failures into.

#[cfg(feature = "azure")]
pub mod azure;
mod backend;
#[cfg(any(feature = "s3", feature = "azure", feature = "gcs"))]
mod cloud;
mod error;
pub mod fs;
#[cfg(feature = "gcs")]
pub mod gcs;
mod ids;
mod list;
mod multipart;
mod names;
mod object;
#[cfg(feature = "s3")]
pub mod s3;

pub use backend::{Backend, BodyStream};
pub use error::{Error, Result};
pub use list::{
    ListPage, ListQuery, ObjectSummary, UploadSummary, UploadsPage, UploadsQuery, common_prefix,
    prefix_successor,
};
pub use multipart::{
    CompletedPart, MAX_PART_NUMBER, MIN_PART_SIZE, PartInfo, PartsPage, UploadId,
    check_part_number, multipart_etag, select_parts,
};
pub use names::{BucketName, ObjectKey};
pub use object::{
    BodyInfo, BucketInfo, ByteRange, Checksums, ObjectAttrs, ObjectInfo, PutOptions, Seal,
    WriteCondition,
};
