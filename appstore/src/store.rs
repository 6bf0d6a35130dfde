//! The App Store's objects in Drive — bundles, icons, screenshots — in one system bucket,
//! reached through Drive's S3 API like any other client, with the App Store's own keys.

use std::path::Path;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;

use crate::config::DriveConfig;

/// Why Drive could not do what the App Store asked.
#[derive(Debug, thiserror::Error)]
#[error("Drive {operation} {key}: {message}")]
pub struct StoreError {
    operation: &'static str,
    key: String,
    message: String,
}

/// A body read from Drive.
pub struct Download {
    /// The bytes, streamed.
    pub body: ByteStream,
    /// Their length.
    pub length: Option<u64>,
}

/// The system bucket in Drive.
#[derive(Clone)]
pub struct Store {
    client: Client,
    bucket: String,
}

fn failure<E: ProvideErrorMetadata + std::fmt::Debug>(
    operation: &'static str,
    key: &str,
    e: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> StoreError {
    let message = match e.as_service_error() {
        Some(s) => format!(
            "{} {}",
            s.code().unwrap_or("error"),
            s.message().unwrap_or_default()
        ),
        None => format!("{e:?}"),
    };
    StoreError {
        operation,
        key: key.to_owned(),
        message,
    }
}

impl Store {
    /// A client for Drive at `config.endpoint`.
    pub fn new(config: &DriveConfig) -> Self {
        let credentials = Credentials::new(
            &config.access_key,
            config.secret_key.expose(),
            None,
            None,
            "appstore",
        );
        let s3 = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&config.endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(credentials)
            .force_path_style(true)
            .build();
        Self {
            client: Client::from_conf(s3),
            bucket: config.bucket.clone(),
        }
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Creates the system bucket unless it exists.
    pub async fn ensure_bucket(&self) -> Result<(), StoreError> {
        match self
            .client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.as_service_error().and_then(|s| s.code()),
                    Some("BucketAlreadyOwnedByYou" | "BucketAlreadyExists")
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(failure("CreateBucket", &self.bucket, &e)),
        }
    }

    /// Whether Drive answers for the bucket.
    pub async fn check(&self) -> Result<(), StoreError> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| failure("HeadBucket", &self.bucket, &e))
    }

    /// Uploads a local file, streamed.
    pub async fn put_file(
        &self,
        key: &str,
        path: &Path,
        content_type: &str,
    ) -> Result<(), StoreError> {
        let body = ByteStream::from_path(path).await.map_err(|e| StoreError {
            operation: "PutObject",
            key: key.to_owned(),
            message: e.to_string(),
        })?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(body)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| failure("PutObject", key, &e))
    }

    /// Uploads bytes held in memory (icons and screenshots, which are small).
    pub async fn put_bytes(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| failure("PutObject", key, &e))
    }

    /// Opens an object for streaming.
    pub async fn get(&self, key: &str) -> Result<Download, StoreError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| failure("GetObject", key, &e))?;
        Ok(Download {
            length: out.content_length().and_then(|n| u64::try_from(n).ok()),
            body: out.body,
        })
    }

    /// Deletes objects; a missing one counts as deleted.
    pub async fn delete(&self, keys: &[String]) -> Result<(), StoreError> {
        for key in keys {
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| failure("DeleteObject", key, &e))?;
        }
        Ok(())
    }

    /// Keys under `prefix`, every page.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| failure("ListObjectsV2", prefix, &e))?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
        }
        Ok(keys)
    }
}
