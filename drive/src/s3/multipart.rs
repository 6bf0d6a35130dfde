//! Multipart uploads.

use buckets::{ByteRange, CompletedPart as Completed, UploadsQuery, check_part_number};
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::bucket::owner;
use super::convert::{
    bucket, copy_source_conditions, declared_digests, etag, key, timestamp, with_checksums,
    write_attrs,
};
use super::copy::source;
use super::digest;
use super::list::{encoder, page_size};
use super::objects::write_condition;
use super::{Drive, error};

fn part_number(n: i32) -> S3Result<u32> {
    check_part_number(n).map_err(error::s3)
}

/// Parses `x-amz-copy-source-range` (`bytes=first-last`, both required).
fn copy_range(value: &str) -> S3Result<ByteRange> {
    let bad = || {
        s3_error!(
            InvalidArgument,
            "The x-amz-copy-source-range value must be of the form bytes=first-last"
        )
    };
    let (first, last) = value
        .strip_prefix("bytes=")
        .and_then(|r| r.split_once('-'))
        .ok_or_else(bad)?;
    let first: u64 = first.parse().map_err(|_| bad())?;
    let last: u64 = last.parse().map_err(|_| bad())?;
    if first > last {
        return Err(bad());
    }
    Ok(ByteRange::Bounded { first, last })
}

impl Drive {
    pub(super) async fn handle_create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let input = req.input;
        let b = bucket(&req.extensions, &input.bucket)?;
        let k = key(&input.key)?;
        let attrs = write_attrs!(input);
        let upload_id = self
            .backend
            .create_multipart_upload(&b, &k, attrs)
            .await
            .map_err(error::s3)?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload_id),
            checksum_algorithm: input.checksum_algorithm,
            ..Default::default()
        }))
    }

    pub(super) async fn handle_upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let input = req.input;
        let b = bucket(&req.extensions, &input.bucket)?;
        let k = key(&input.key)?;
        let n = part_number(input.part_number)?;
        let body = input.body.ok_or_else(|| s3_error!(IncompleteBody))?;
        let (body, info) = digest::verify(
            body,
            declared_digests!(input),
            &req.headers,
            req.trailing_headers,
        );
        let part = self
            .backend
            .upload_part(&b, &k, &input.upload_id, n, body, info)
            .await
            .map_err(error::s3)?;
        Ok(S3Response::new(with_checksums!(
            UploadPartOutput {
                e_tag: Some(etag(&part.etag))
            },
            Some(&part.checksums)
        )))
    }

    pub(super) async fn handle_upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let input = req.input;
        let (sb, sk) = source(&req.extensions, &input.copy_source)?;
        let b = bucket(&req.extensions, &input.bucket)?;
        let k = key(&input.key)?;
        let n = part_number(input.part_number)?;
        let range = input
            .copy_source_range
            .as_deref()
            .map(copy_range)
            .transpose()?;
        let (info, body) = self
            .backend
            .get_object(&sb, &sk, range)
            .await
            .map_err(error::s3)?;
        copy_source_conditions!(input).check(&info, true)?;
        if let Some(ByteRange::Bounded { last, .. }) = range
            && last >= info.size
        {
            return Err(s3_error!(
                InvalidRange,
                "The x-amz-copy-source-range must lie within the source object of {} bytes",
                info.size
            ));
        }
        let len = match range {
            Some(r) => r.resolve(info.size).map_err(error::s3)?.1,
            None => info.size,
        };
        let body_info = buckets::BodyInfo {
            len: Some(len),
            ..Default::default()
        };
        let part = self
            .backend
            .upload_part(&b, &k, &input.upload_id, n, body, body_info)
            .await
            .map_err(error::s3)?;
        Ok(S3Response::new(UploadPartCopyOutput {
            copy_part_result: Some(CopyPartResult {
                e_tag: Some(etag(&part.etag)),
                last_modified: Some(timestamp(part.last_modified)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    pub(super) async fn handle_list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let input = req.input;
        let b = bucket(&req.extensions, &input.bucket)?;
        let k = key(&input.key)?;
        let marker = u32::try_from(input.part_number_marker.unwrap_or(0)).unwrap_or(0);
        let max = page_size(input.max_parts, "max-parts")?;
        let page = self
            .backend
            .list_parts(&b, &k, &input.upload_id, marker, max)
            .await
            .map_err(error::s3)?;
        let parts = page
            .parts
            .iter()
            .map(|p| Part {
                part_number: Some(i32::try_from(p.number).unwrap_or(i32::MAX)),
                e_tag: Some(etag(&p.etag)),
                size: Some(i64::try_from(p.size).unwrap_or(i64::MAX)),
                last_modified: Some(timestamp(p.last_modified)),
                checksum_crc32: p.checksums.get("CRC32").cloned(),
                checksum_crc32c: p.checksums.get("CRC32C").cloned(),
                checksum_sha1: p.checksums.get("SHA1").cloned(),
                checksum_sha256: p.checksums.get("SHA256").cloned(),
                checksum_crc64nvme: p.checksums.get("CRC64NVME").cloned(),
            })
            .collect();
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: page
                .next_marker
                .map(|m| i32::try_from(m).unwrap_or(i32::MAX)),
            max_parts: Some(i32::try_from(max).unwrap_or(1000)),
            is_truncated: Some(page.next_marker.is_some()),
            parts: Some(parts),
            owner: Some(owner()),
            storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
            ..Default::default()
        }))
    }

    pub(super) async fn handle_complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let input = req.input;
        let b = bucket(&req.extensions, &input.bucket)?;
        let k = key(&input.key)?;
        let condition = write_condition(input.if_match.as_ref(), input.if_none_match.as_ref())?;
        let requested = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default();
        let parts = requested
            .into_iter()
            .map(|p| {
                let number =
                    part_number(p.part_number.ok_or_else(|| {
                        s3_error!(InvalidPart, "Every part needs a part number")
                    })?)?;
                let etag = p
                    .e_tag
                    .ok_or_else(|| s3_error!(InvalidPart, "Every part needs an ETag"))?;
                Ok(Completed {
                    number,
                    etag: etag.value().to_owned(),
                })
            })
            .collect::<S3Result<Vec<_>>>()?;
        let info = self
            .backend
            .complete_multipart_upload(&b, &k, &input.upload_id, &parts, condition)
            .await
            .map_err(error::s3)?;
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(input.bucket.clone()),
            key: Some(input.key.clone()),
            e_tag: Some(etag(&info.etag)),
            location: Some(format!("/{}/{}", input.bucket, input.key)),
            ..Default::default()
        }))
    }

    pub(super) async fn handle_abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let b = bucket(&req.extensions, &req.input.bucket)?;
        let k = key(&req.input.key)?;
        self.backend
            .abort_multipart_upload(&b, &k, &req.input.upload_id)
            .await
            .map_err(error::s3)?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    pub(super) async fn handle_list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let input = req.input;
        let b = bucket(&req.extensions, &input.bucket)?;
        let enc = encoder(input.encoding_type.as_ref())?;
        let query = UploadsQuery {
            prefix: input.prefix.clone().unwrap_or_default(),
            delimiter: input.delimiter.clone().filter(|d| !d.is_empty()),
            key_marker: input.key_marker.clone().filter(|m| !m.is_empty()),
            upload_id_marker: input.upload_id_marker.clone().filter(|m| !m.is_empty()),
            max_uploads: page_size(input.max_uploads, "max-uploads")?,
        };
        let page = self
            .backend
            .list_multipart_uploads(&b, &query)
            .await
            .map_err(error::s3)?;
        let uploads = page
            .uploads
            .iter()
            .map(|u| MultipartUpload {
                key: Some(enc(u.key.clone())),
                upload_id: Some(u.upload_id.clone()),
                initiated: Some(timestamp(u.initiated)),
                owner: Some(owner()),
                initiator: Some(Initiator {
                    display_name: Some("drive".into()),
                    id: Some("drive".into()),
                }),
                storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
                ..Default::default()
            })
            .collect();
        let (next_key, next_id) = page
            .next
            .clone()
            .map_or((None, None), |(k, id)| (Some(enc(k)), id));
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: Some(enc(query.prefix.clone())),
            delimiter: input.delimiter.map(enc),
            key_marker: input.key_marker.map(enc),
            upload_id_marker: input.upload_id_marker,
            max_uploads: Some(i32::try_from(query.max_uploads).unwrap_or(1000)),
            is_truncated: Some(page.next.is_some()),
            next_key_marker: next_key,
            next_upload_id_marker: next_id,
            uploads: Some(uploads),
            common_prefixes: Some(
                page.common_prefixes
                    .iter()
                    .map(|p| CommonPrefix {
                        prefix: Some(enc(p.clone())),
                    })
                    .collect(),
            ),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }
}
