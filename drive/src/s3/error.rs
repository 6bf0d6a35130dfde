//! The one place where storage errors become S3 errors.

use s3s::{S3Error, S3ErrorCode, s3_error};

use super::digest::DigestError;

/// Maps a storage error to the S3 error an SDK expects. Unexpected failures become
/// `InternalError`, logged with their source and never shown to the client.
pub fn s3(e: buckets::Error) -> S3Error {
    use buckets::Error as E;
    match e {
        E::NoSuchBucket => with_default(S3ErrorCode::NoSuchBucket),
        E::BucketAlreadyExists => with_default(S3ErrorCode::BucketAlreadyOwnedByYou),
        E::BucketNotEmpty => with_default(S3ErrorCode::BucketNotEmpty),
        E::NoSuchKey => with_default(S3ErrorCode::NoSuchKey),
        E::NoSuchUpload => with_default(S3ErrorCode::NoSuchUpload),
        E::PreconditionFailed(why) => S3Error::with_message(S3ErrorCode::PreconditionFailed, why),
        E::InvalidRange => with_default(S3ErrorCode::InvalidRange),
        E::InvalidPart(why) => S3Error::with_message(S3ErrorCode::InvalidPart, why),
        E::InvalidPartOrder => with_default(S3ErrorCode::InvalidPartOrder),
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
        E::Body(io) => body_error(&io),
        E::SlowDown => with_default(S3ErrorCode::SlowDown),
        e @ E::Unavailable(_) => {
            tracing::warn!(error = %e, "storage unavailable");
            s3_error!(
                ServiceUnavailable,
                "The storage backend is unavailable. Please try again."
            )
        }
        e @ (E::Io(_) | E::Index(_) | E::Backend(_)) => {
            tracing::error!(error = %e, "storage failure");
            s3_error!(
                InternalError,
                "We encountered an internal error. Please try again."
            )
        }
    }
}

/// The S3 error for a request body that could not be read. s3s reports a bad chunk
/// signature in an `aws-chunked` body through an error type it does not export, so it is
/// recognized by its message.
fn body_error(io: &std::io::Error) -> S3Error {
    let inner = io
        .get_ref()
        .map_or_else(|| io.to_string(), ToString::to_string);
    if inner.contains("SignatureMismatch") {
        return with_default(S3ErrorCode::SignatureDoesNotMatch);
    }
    if inner.contains("aws-chunked chunk") {
        // The framing guard (crate::framing) refused the body; its message says why.
        return S3Error::with_message(
            S3ErrorCode::InvalidRequest,
            format!("The aws-chunked body was refused: {inner}"),
        );
    }
    if inner.contains("Sha256Mismatch") {
        let mut e = S3Error::with_message(
            S3ErrorCode::Custom("XAmzContentSHA256Mismatch".into()),
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        );
        e.set_status_code(http::StatusCode::BAD_REQUEST);
        return e;
    }
    tracing::info!(error = %inner, "request body could not be read");
    S3Error::with_message(
        S3ErrorCode::IncompleteBody,
        "The request body could not be read in full.",
    )
}

fn with_default(code: S3ErrorCode) -> S3Error {
    let message = default_message(code.as_str());
    S3Error::with_message(code, message)
}

/// The message AWS S3 sends with an error code, for errors raised without one.
pub fn default_message(code: &str) -> &'static str {
    match code {
        "AccessDenied" => "Access Denied",
        "BadDigest" => {
            "The Content-MD5 or checksum value that you specified did not match what the server received."
        }
        "BucketAlreadyOwnedByYou" => {
            "Your previous request to create the named bucket succeeded and you already own it."
        }
        "BucketNotEmpty" => "The bucket you tried to delete is not empty",
        "EntityTooSmall" => "Your proposed upload is smaller than the minimum allowed object size.",
        "IncompleteBody" => {
            "You did not provide the number of bytes specified by the Content-Length HTTP header."
        }
        "InternalError" => "We encountered an internal error. Please try again.",
        "InvalidAccessKeyId" => "The AWS Access Key Id you provided does not exist in our records.",
        "InvalidArgument" => "Invalid Argument",
        "InvalidBucketName" => "The specified bucket is not valid.",
        "InvalidDigest" => "The Content-MD5 or checksum value that you specified is not valid.",
        "InvalidPart" => {
            "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag."
        }
        "InvalidPartOrder" => {
            "The list of parts was not in ascending order. The parts list must be specified in order by part number."
        }
        "InvalidRange" => "The requested range is not satisfiable",
        "InvalidRequest" => "Invalid Request",
        "KeyTooLongError" => "Your key is too long",
        "MalformedXML" => {
            "The XML you provided was not well-formed or did not validate against our published schema."
        }
        "MethodNotAllowed" => "The specified method is not allowed against this resource.",
        "MissingContentLength" => "You must provide the Content-Length HTTP header.",
        "NoSuchBucket" => "The specified bucket does not exist",
        "NoSuchKey" => "The specified key does not exist.",
        "NoSuchUpload" => {
            "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed."
        }
        "NotImplemented" => "A header you provided implies functionality that is not implemented.",
        "PreconditionFailed" => "At least one of the pre-conditions you specified did not hold",
        "RequestTimeTooSkewed" => {
            "The difference between the request time and the current time is too large."
        }
        "SignatureDoesNotMatch" => {
            "The request signature we calculated does not match the signature you provided. Check your key and signing method."
        }
        _ => "The request could not be processed.",
    }
}
