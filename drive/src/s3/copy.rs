//! CopyObject.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::convert::{bucket, copy_source_conditions, etag, key, timestamp, write_attrs};
use super::{Drive, error};

/// The bucket and key a copy reads from.
pub fn source(
    extensions: &http::Extensions,
    copy_source: &CopySource,
) -> S3Result<(buckets::BucketName, buckets::ObjectKey)> {
    match copy_source {
        CopySource::Bucket {
            bucket: b,
            key: k,
            version_id: None,
        } => Ok((bucket(extensions, b)?, key(k)?)),
        CopySource::Bucket {
            version_id: Some(_),
            ..
        } => Err(s3_error!(
            NotImplemented,
            "Drive does not keep object versions"
        )),
        _ => Err(s3_error!(
            NotImplemented,
            "Only bucket/key copy sources are supported"
        )),
    }
}

impl Drive {
    pub(super) async fn handle_copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let input = req.input;
        let (sb, sk) = source(&req.extensions, &input.copy_source)?;
        let db = bucket(&req.extensions, &input.bucket)?;
        let dk = key(&input.key)?;
        let replace = match input
            .metadata_directive
            .as_ref()
            .map(MetadataDirective::as_str)
        {
            None | Some(MetadataDirective::COPY) => false,
            Some(MetadataDirective::REPLACE) => true,
            Some(other) => {
                return Err(s3_error!(
                    InvalidArgument,
                    "Unknown metadata directive {other:?}"
                ));
            }
        };
        if (&sb, &sk) == (&db, &dk) && !replace {
            return Err(s3_error!(
                InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
            ));
        }
        let source_info = self
            .backend
            .head_object(&sb, &sk)
            .await
            .map_err(error::s3)?;
        copy_source_conditions!(input).check(&source_info, true)?;
        let attrs = replace.then(|| write_attrs!(input));
        let info = self
            .backend
            .copy_object((&sb, &sk), (&db, &dk), attrs, None, Some(&source_info.etag))
            .await
            .map_err(error::s3)?;
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(etag(&info.etag)),
                last_modified: Some(timestamp(info.last_modified)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }
}
