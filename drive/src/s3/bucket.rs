//! Bucket operations.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result};

use buckets::BucketInfo;

use super::convert::{bucket, timestamp};
use super::{Drive, error};
use crate::auth::Caller;
use crate::namespace;

/// The owner shown in listings: the deployment's root account.
pub fn owner() -> Owner {
    Owner {
        display_name: Some("drive".into()),
        id: Some("drive".into()),
    }
}

impl Drive {
    pub(super) async fn handle_list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let mut listed = Vec::new();
        let everything = match req.extensions.get::<Caller>() {
            Some(Caller::User { principal, admin }) => {
                for (name, b) in namespace::aliases(principal) {
                    self.provisioner.ensure(&b).await?;
                    let info = self.backend.head_bucket(&b).await.map_err(error::s3)?;
                    listed.push(BucketInfo {
                        name,
                        created: info.created,
                    });
                }
                *admin
            }
            _ => true,
        };
        if everything {
            listed.extend(self.backend.list_buckets().await.map_err(error::s3)?);
        }
        let buckets = listed
            .into_iter()
            .map(|b| Bucket {
                name: Some(b.name),
                creation_date: Some(timestamp(b.created)),
                bucket_region: Some(self.region.clone()),
            })
            .collect();
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(owner()),
            ..Default::default()
        }))
    }

    pub(super) async fn handle_create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let name = bucket(&req.extensions, &req.input.bucket)?;
        self.backend.create_bucket(&name).await.map_err(error::s3)?;
        Ok(S3Response::new(CreateBucketOutput {
            location: Some(format!("/{name}")),
        }))
    }

    pub(super) async fn handle_head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        let name = bucket(&req.extensions, &req.input.bucket)?;
        self.backend.head_bucket(&name).await.map_err(error::s3)?;
        Ok(S3Response::new(HeadBucketOutput {
            bucket_region: Some(self.region.clone()),
            ..Default::default()
        }))
    }

    pub(super) async fn handle_delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let name = bucket(&req.extensions, &req.input.bucket)?;
        self.backend.delete_bucket(&name).await.map_err(error::s3)?;
        Ok(S3Response::new(DeleteBucketOutput {}))
    }

    pub(super) async fn handle_get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        let name = bucket(&req.extensions, &req.input.bucket)?;
        self.backend.head_bucket(&name).await.map_err(error::s3)?;
        // S3 reports us-east-1 as an empty location constraint.
        let location = (self.region != "us-east-1")
            .then(|| BucketLocationConstraint::from(self.region.clone()));
        Ok(S3Response::new(GetBucketLocationOutput {
            location_constraint: location,
        }))
    }
}
