//! The one place where storage errors become S3 errors.

use s3s::{S3Error, S3ErrorCode, s3_error};

use super::digest::DigestError;

/// Maps a storage error to the S3 error an SDK expects. Unexpected failures become
/// `InternalError`, logged with their source and never shown to the client.
pub fn s3(e: buckets::Error) -> S3Error {
    use buckets::Error as E;
    match e {
        E::NoSuchBucket => s3_error!(NoSuchBucket),
        E::BucketAlreadyExists => s3_error!(BucketAlreadyOwnedByYou),
        E::BucketNotEmpty => s3_error!(BucketNotEmpty),
        E::NoSuchKey => s3_error!(NoSuchKey),
        E::NoSuchUpload => s3_error!(NoSuchUpload),
        E::PreconditionFailed(why) => S3Error::with_message(S3ErrorCode::PreconditionFailed, why),
        E::InvalidRange => s3_error!(InvalidRange),
        E::InvalidPart(why) => S3Error::with_message(S3ErrorCode::InvalidPart, why),
        E::InvalidPartOrder => s3_error!(InvalidPartOrder),
        e @ E::EntityTooSmall { .. } => {
            S3Error::with_message(S3ErrorCode::EntityTooSmall, e.to_string())
        }
        E::InvalidArgument(why) => S3Error::with_message(S3ErrorCode::InvalidArgument, why),
        E::InvalidBucketName(why) => S3Error::with_message(S3ErrorCode::InvalidBucketName, why),
        E::InvalidKey(why) if why.contains("above the limit") => {
            S3Error::with_message(S3ErrorCode::KeyTooLongError, why)
        }
        E::InvalidKey(why) => S3Error::with_message(S3ErrorCode::InvalidArgument, why),
        E::Rejected(inner) => match inner.downcast::<DigestError>() {
            Ok(d) => d.to_s3(),
            Err(other) => S3Error::with_message(S3ErrorCode::InvalidRequest, other.to_string()),
        },
        E::Body(io) => {
            tracing::info!(error = %io, "request body could not be read");
            S3Error::with_message(
                S3ErrorCode::IncompleteBody,
                "The request body could not be read in full.",
            )
        }
        e @ (E::Io(_) | E::Index(_)) => {
            tracing::error!(error = %e, "storage failure");
            s3_error!(
                InternalError,
                "We encountered an internal error. Please try again."
            )
        }
    }
}
