//! Object reads and writes.

use buckets::{ByteRange, PutOptions, WriteCondition};
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::convert::{
    bucket, checksum_mode, declared_digests, etag, key, object_headers, read_conditions,
    resolve_range, with_checksums, write_attrs,
};
use super::digest;
use super::{Drive, error};

/// The write condition of a PutObject or CompleteMultipartUpload.
pub fn write_condition(
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
) -> S3Result<Option<WriteCondition>> {
    match (if_match, if_none_match) {
        (_, Some(ETagCondition::Any)) => Ok(Some(WriteCondition::IfNoneExists)),
        (_, Some(ETagCondition::ETag(_))) => Err(s3_error!(
            NotImplemented,
            "If-None-Match on writes supports only '*'"
        )),
        (Some(ETagCondition::Any), None) => Ok(Some(WriteCondition::IfMatch("*".into()))),
        (Some(ETagCondition::ETag(e)), None) => {
            Ok(Some(WriteCondition::IfMatch(e.value().to_owned())))
        }
        (None, None) => Ok(None),
    }
}

/// A byte range in storage terms.
pub fn byte_range(range: Range) -> ByteRange {
    match range {
        Range::Int {
            first,
            last: Some(last),
        } => ByteRange::Bounded { first, last },
        Range::Int { first, last: None } => ByteRange::From { first },
        Range::Suffix { length } => ByteRange::Suffix { len: length },
    }
}

impl Drive {
    pub(super) async fn handle_put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let input = req.input;
        let b = bucket(&req.extensions, &input.bucket)?;
        let k = key(&input.key)?;
        let body = input.body.ok_or_else(|| s3_error!(IncompleteBody))?;
        let condition = write_condition(input.if_match.as_ref(), input.if_none_match.as_ref())?;
        let (body, info) = digest::verify(
            body,
            declared_digests!(input),
            &req.headers,
            req.trailing_headers,
        );
        let attrs = write_attrs!(input);
        let opts = PutOptions {
            attrs,
            condition,
            body: info,
        };
        let info = self
            .backend
            .put_object(&b, &k, body, opts)
            .await
            .map_err(error::s3)?;
        Ok(S3Response::new(with_checksums!(
            PutObjectOutput {
                e_tag: Some(etag(&info.etag))
            },
            Some(&info.checksums)
        )))
    }

    pub(super) async fn handle_get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        let b = bucket(&req.extensions, &input.bucket)?;
        let k = key(&input.key)?;
        if input.part_number.is_some() {
            return Err(s3_error!(
                NotImplemented,
                "GetObject by part number is not supported"
            ));
        }
        let range = input.range.map(byte_range);
        let (info, body) = match self.backend.get_object(&b, &k, range).await {
            Ok(found) => found,
            Err(buckets::Error::InvalidRange) => {
                // Preconditions come before the range (RFC 9110): 412/304 win over 416.
                let info = self.backend.head_object(&b, &k).await.map_err(error::s3)?;
                read_conditions!(input).check(&info, false)?;
                return Err(error::s3(buckets::Error::InvalidRange));
            }
            Err(e) => return Err(error::s3(e)),
        };
        read_conditions!(input).check(&info, false)?;
        let (_, len, content_range) = resolve_range(range, info.size)?;
        let with_checksums = len == info.size && checksum_mode(input.checksum_mode.as_ref());
        let output = object_headers!(
            GetObjectOutput {
                body: Some(StreamingBlob::wrap(body))
            },
            input,
            info,
            len,
            content_range,
            with_checksums
        );
        Ok(S3Response::new(output))
    }

    pub(super) async fn handle_head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = req.input;
        let b = bucket(&req.extensions, &input.bucket)?;
        let k = key(&input.key)?;
        let info = self.backend.head_object(&b, &k).await.map_err(error::s3)?;
        read_conditions!(input).check(&info, false)?;
        let (_, len, content_range) = resolve_range(input.range.map(byte_range), info.size)?;
        let with_checksums = checksum_mode(input.checksum_mode.as_ref());
        Ok(S3Response::new(object_headers!(
            HeadObjectOutput {},
            input,
            info,
            len,
            content_range,
            with_checksums
        )))
    }

    pub(super) async fn handle_delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let input = &req.input;
        if input.if_match.is_some()
            || input.if_match_last_modified_time.is_some()
            || input.if_match_size.is_some()
        {
            // Refused rather than ignored: a conditional delete must never delete unconditionally.
            return Err(s3_error!(
                NotImplemented,
                "Conditional deletes are not supported"
            ));
        }
        let b = bucket(&req.extensions, &input.bucket)?;
        let k = key(&input.key)?;
        self.backend
            .delete_object(&b, &k)
            .await
            .map_err(error::s3)?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    pub(super) async fn handle_delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let input = req.input;
        let b = bucket(&req.extensions, &input.bucket)?;
        if input.delete.objects.len() > 1000 {
            return Err(s3_error!(
                MalformedXML,
                "A DeleteObjects request may name at most 1000 keys"
            ));
        }
        self.backend.head_bucket(&b).await.map_err(error::s3)?;
        let quiet = input.delete.quiet.unwrap_or(false);
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        for object in input.delete.objects {
            let conditional = object.e_tag.is_some()
                || object.last_modified_time.is_some()
                || object.size.is_some();
            let result = match key(&object.key) {
                Ok(_) if conditional => Err(s3_error!(
                    NotImplemented,
                    "Conditional deletes are not supported"
                )),
                Ok(k) => self.backend.delete_object(&b, &k).await.map_err(error::s3),
                Err(e) => Err(e),
            };
            match result {
                Ok(()) if !quiet => deleted.push(DeletedObject {
                    key: Some(object.key),
                    ..Default::default()
                }),
                Ok(()) => {}
                Err(e) => errors.push(Error {
                    code: Some(e.code().as_str().to_owned()),
                    message: e.message().map(str::to_owned),
                    key: Some(object.key),
                    version_id: None,
                }),
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: Some(errors),
            ..Default::default()
        }))
    }
}
