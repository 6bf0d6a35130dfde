//! The authorization matrix: every S3 operation Drive serves, by every kind of caller
//! (owner, other user, group member, non-member, admin, anonymous), against a home bucket
//! and a group workspace. Each cell is generated from the policy's expectation and checked
//! against the real server; denials must look the same whether the bucket exists or not,
//! and never reveal another user's keys.

use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use bytes::Bytes;
use s3_compat_tests::HasStatus;
use s3_compat_tests::idp::Idp;
use s3_compat_tests::server::DriveProcess;
use s3_compat_tests::sign;
use s3_compat_tests::sts::{assume, session_client};
use sha2::Digest;

const ALICE_SUB: &str = "00000000-0000-4000-8000-00000000a11c";
const SECRET: &str = "alice-secret-0.txt";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    ListObjectsV2,
    ListObjects,
    HeadBucket,
    GetBucketLocation,
    PutObject,
    GetObject,
    HeadObject,
    DeleteObject,
    DeleteObjects,
    CopyInto,
    CopyFrom,
    CreateMultipartUpload,
    UploadPart,
    ListParts,
    ListMultipartUploads,
    CompleteMultipartUpload,
    AbortMultipartUpload,
    UploadPartCopy,
    CreateBucket,
    DeleteBucket,
}

const OPS: [Op; 20] = [
    Op::ListObjectsV2,
    Op::ListObjects,
    Op::HeadBucket,
    Op::GetBucketLocation,
    Op::PutObject,
    Op::GetObject,
    Op::HeadObject,
    Op::DeleteObject,
    Op::DeleteObjects,
    Op::CopyInto,
    Op::CopyFrom,
    Op::CreateMultipartUpload,
    Op::UploadPart,
    Op::ListParts,
    Op::ListMultipartUploads,
    Op::CompleteMultipartUpload,
    Op::AbortMultipartUpload,
    Op::UploadPartCopy,
    Op::CreateBucket,
    Op::DeleteBucket,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Owner,
    OtherUser,
    GroupMember,
    NonMember,
    Admin,
    Anonymous,
}

const WHO: [Who; 6] = [
    Who::Owner,
    Who::OtherUser,
    Who::GroupMember,
    Who::NonMember,
    Who::Admin,
    Who::Anonymous,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// Alice's home bucket.
    Home,
    /// The workspace of group team-a (alice and bob).
    Workspace,
}

/// The IdP's user playing `who` (alice owns the home and is in team-a; bob is in team-a;
/// carol only in team-b; erin in no group; dave holds drive-admin).
fn user(who: Who) -> &'static str {
    match who {
        Who::Owner => "alice",
        Who::GroupMember => "bob",
        Who::OtherUser => "carol",
        Who::NonMember => "erin",
        Who::Admin => "dave",
        Who::Anonymous => "",
    }
}

/// Whether the policy lets `who` do `op` on `target`.
fn expected(target: Target, who: Who, op: Op) -> bool {
    let reaches = matches!(
        (target, who),
        (_, Who::Admin | Who::Owner) | (Target::Workspace, Who::GroupMember)
    );
    match op {
        Op::CreateBucket | Op::DeleteBucket => who == Who::Admin,
        _ => reaches,
    }
}

/// The backend name of alice's home bucket.
fn alice_home() -> String {
    let digest = sha2::Sha256::new()
        .chain_update(b"drive-user\n")
        .chain_update(ALICE_SUB.as_bytes())
        .finalize();
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("home--{hex}")
}

/// The bucket name `who` uses for `target`.
fn name(target: Target, who: Who) -> String {
    match (target, who) {
        (Target::Home, Who::Owner) => "_my".into(),
        (Target::Home, _) => alice_home(),
        (Target::Workspace, Who::Admin) => "ws--team-a".into(),
        (Target::Workspace, _) => "team-a".into(),
    }
}

/// What a refused call answered.
#[derive(Debug)]
struct Refusal {
    code: String,
    status: u16,
    message: String,
}

fn outcome<T, E, R>(r: Result<T, SdkError<E, R>>) -> Result<(), Refusal>
where
    E: ProvideErrorMetadata,
    R: HasStatus,
{
    r.map(|_| ()).map_err(|e| Refusal {
        status: e.raw_response().map_or(0, HasStatus::status),
        code: e.code().unwrap_or_default().to_owned(),
        message: e.message().unwrap_or_default().to_owned(),
    })
}

fn body(text: &str) -> ByteStream {
    ByteStream::from(text.as_bytes().to_vec())
}

/// A multipart upload alice starts in `bucket`, with one part uploaded.
async fn alice_upload(alice: &Client, bucket: &str, key: &str) -> (String, String) {
    let id = alice
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_owned();
    let etag = alice
        .upload_part()
        .bucket(bucket)
        .key(key)
        .upload_id(&id)
        .part_number(1)
        .body(body("part one"))
        .send()
        .await
        .unwrap()
        .e_tag()
        .unwrap()
        .to_owned();
    (id, etag)
}

/// Runs `op` as a signed-in caller with `client` on `bucket`.
async fn run(
    op: Op,
    client: &Client,
    alice: &Client,
    owner_bucket: &str,
    bucket: &str,
    tag: &str,
) -> Result<(), Refusal> {
    let own = "_my";
    match op {
        Op::ListObjectsV2 => outcome(client.list_objects_v2().bucket(bucket).send().await),
        Op::ListObjects => outcome(client.list_objects().bucket(bucket).send().await),
        Op::HeadBucket => outcome(client.head_bucket().bucket(bucket).send().await),
        Op::GetBucketLocation => outcome(client.get_bucket_location().bucket(bucket).send().await),
        Op::PutObject => outcome(
            client
                .put_object()
                .bucket(bucket)
                .key(format!("put-{tag}.txt"))
                .body(body("x"))
                .send()
                .await,
        ),
        Op::GetObject => outcome(client.get_object().bucket(bucket).key(SECRET).send().await),
        Op::HeadObject => outcome(client.head_object().bucket(bucket).key(SECRET).send().await),
        Op::DeleteObject => outcome(
            client
                .delete_object()
                .bucket(bucket)
                .key(format!("victim-{tag}.txt"))
                .send()
                .await,
        ),
        Op::DeleteObjects => {
            let delete = Delete::builder()
                .objects(
                    ObjectIdentifier::builder()
                        .key(format!("victim-{tag}.txt"))
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap();
            outcome(
                client
                    .delete_objects()
                    .bucket(bucket)
                    .delete(delete)
                    .send()
                    .await,
            )
        }
        Op::CopyInto => outcome(
            client
                .copy_object()
                .bucket(bucket)
                .key(format!("copied-{tag}.txt"))
                .copy_source(format!("{own}/own.txt"))
                .send()
                .await,
        ),
        Op::CopyFrom => outcome(
            client
                .copy_object()
                .bucket(own)
                .key(format!("stolen-{tag}.txt"))
                .copy_source(format!("{bucket}/{SECRET}"))
                .send()
                .await,
        ),
        Op::CreateMultipartUpload => outcome(
            client
                .create_multipart_upload()
                .bucket(bucket)
                .key(format!("mp-{tag}.bin"))
                .send()
                .await,
        ),
        Op::UploadPart => {
            let (id, _) = alice_upload(alice, owner_bucket, "mp.bin").await;
            outcome(
                client
                    .upload_part()
                    .bucket(bucket)
                    .key("mp.bin")
                    .upload_id(id)
                    .part_number(2)
                    .body(body("part two"))
                    .send()
                    .await,
            )
        }
        Op::ListParts => {
            let (id, _) = alice_upload(alice, owner_bucket, "mp.bin").await;
            outcome(
                client
                    .list_parts()
                    .bucket(bucket)
                    .key("mp.bin")
                    .upload_id(id)
                    .send()
                    .await,
            )
        }
        Op::ListMultipartUploads => {
            outcome(client.list_multipart_uploads().bucket(bucket).send().await)
        }
        Op::CompleteMultipartUpload => {
            let (id, etag) = alice_upload(alice, owner_bucket, "mp.bin").await;
            let parts = CompletedMultipartUpload::builder()
                .parts(CompletedPart::builder().part_number(1).e_tag(etag).build())
                .build();
            outcome(
                client
                    .complete_multipart_upload()
                    .bucket(bucket)
                    .key("mp.bin")
                    .upload_id(id)
                    .multipart_upload(parts)
                    .send()
                    .await,
            )
        }
        Op::AbortMultipartUpload => {
            let (id, _) = alice_upload(alice, owner_bucket, "mp.bin").await;
            outcome(
                client
                    .abort_multipart_upload()
                    .bucket(bucket)
                    .key("mp.bin")
                    .upload_id(id)
                    .send()
                    .await,
            )
        }
        Op::UploadPartCopy => {
            let id = client
                .create_multipart_upload()
                .bucket(own)
                .key(format!("upc-{tag}.bin"))
                .send()
                .await
                .unwrap()
                .upload_id()
                .unwrap()
                .to_owned();
            outcome(
                client
                    .upload_part_copy()
                    .bucket(own)
                    .key(format!("upc-{tag}.bin"))
                    .upload_id(id)
                    .part_number(1)
                    .copy_source(format!("{bucket}/{SECRET}"))
                    .send()
                    .await,
            )
        }
        Op::CreateBucket => outcome(client.create_bucket().bucket(bucket).send().await),
        Op::DeleteBucket => outcome(client.delete_bucket().bucket(bucket).send().await),
    }
}

/// Runs `op` without credentials, as raw HTTP.
async fn run_anonymous(op: Op, endpoint: &str, bucket: &str, upload: &str) -> Result<(), Refusal> {
    let b = format!("{endpoint}/{bucket}");
    let o = format!("{b}/{SECRET}");
    let mp = format!("{b}/mp.bin?uploadId={upload}");
    let source = format!("/{bucket}/{SECRET}");
    let delete_xml = format!("<Delete><Object><Key>{SECRET}</Key></Object></Delete>");
    let complete_xml = "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part></CompleteMultipartUpload>";
    let (method, url, headers, payload): (&str, String, Vec<(&str, &str)>, &str) = match op {
        Op::ListObjectsV2 => ("GET", format!("{b}?list-type=2"), vec![], ""),
        Op::ListObjects => ("GET", b.clone(), vec![], ""),
        Op::HeadBucket => ("HEAD", b.clone(), vec![], ""),
        Op::GetBucketLocation => ("GET", format!("{b}?location"), vec![], ""),
        Op::PutObject => ("PUT", format!("{b}/anon.txt"), vec![], "x"),
        Op::GetObject => ("GET", o.clone(), vec![], ""),
        Op::HeadObject => ("HEAD", o.clone(), vec![], ""),
        Op::DeleteObject => ("DELETE", o.clone(), vec![], ""),
        Op::DeleteObjects => ("POST", format!("{b}?delete"), vec![], delete_xml.as_str()),
        Op::CopyInto | Op::CopyFrom => (
            "PUT",
            format!("{b}/anon-copy.txt"),
            vec![("x-amz-copy-source", source.as_str())],
            "",
        ),
        Op::CreateMultipartUpload => ("POST", format!("{b}/anon.bin?uploads"), vec![], ""),
        Op::UploadPart => ("PUT", format!("{mp}&partNumber=2"), vec![], "x"),
        Op::ListParts => ("GET", mp.clone(), vec![], ""),
        Op::ListMultipartUploads => ("GET", format!("{b}?uploads"), vec![], ""),
        Op::CompleteMultipartUpload => ("POST", mp.clone(), vec![], complete_xml),
        Op::AbortMultipartUpload => ("DELETE", mp.clone(), vec![], ""),
        Op::UploadPartCopy => (
            "PUT",
            format!("{mp}&partNumber=2"),
            vec![("x-amz-copy-source", source.as_str())],
            "",
        ),
        Op::CreateBucket => ("PUT", b.clone(), vec![], ""),
        Op::DeleteBucket => ("DELETE", b.clone(), vec![], ""),
    };
    let reply = sign::send(sign::request(
        method,
        &url,
        headers,
        Bytes::from(payload.to_owned()),
    ))
    .await;
    if (200..300).contains(&reply.status) {
        return Ok(());
    }
    let text = reply.text();
    Err(Refusal {
        code: reply.code(),
        status: reply.status,
        message: s3_compat_tests::sts::element(&text, "Message").unwrap_or_default(),
    })
}

/// Whether an allowed call did what it asked, or failed for a reason other than who asked:
/// the bucket's contents, or a name reserved for user buckets (the admin's CreateBucket).
fn succeeded(r: &Result<(), Refusal>) -> bool {
    match r {
        Ok(()) => true,
        Err(e) => matches!(
            e.code.as_str(),
            "BucketNotEmpty" | "BucketAlreadyOwnedByYou" | "InvalidBucketName"
        ),
    }
}

fn is_denial(r: &Result<(), Refusal>, head: bool) -> bool {
    match r {
        Ok(()) => false,
        Err(e) if head => e.status == 403,
        Err(e) => e.status == 403 && e.code == "AccessDenied",
    }
}

#[tokio::test]
async fn every_operation_by_every_caller() {
    let idp = Idp::start().await;
    let temp = tempfile::tempdir().unwrap();
    let drive = DriveProcess::start_in(
        temp.path(),
        &[
            "--oidc-issuer",
            idp.issuer(),
            "--oidc-audience",
            "urn:drive",
        ],
    )
    .keeping(temp);
    let mut clients = Vec::new();
    for who in WHO {
        let client = if who == Who::Anonymous {
            None
        } else {
            let token = idp.login(user(who)).await.access_token;
            let creds = assume(&drive.endpoint, &token, None).await.unwrap();
            let c = session_client(&drive.endpoint, &creds);
            // Every signed-in caller has a file of their own to copy from.
            c.put_object()
                .bucket("_my")
                .key("own.txt")
                .body(body("own"))
                .send()
                .await
                .unwrap();
            Some(c)
        };
        clients.push((who, client));
    }
    let alice = clients[0].1.clone().unwrap();
    let admin = clients[4].1.clone().unwrap();

    let mut cells = 0;
    let mut wrong = Vec::new();
    for target in [Target::Home, Target::Workspace] {
        let owner_bucket = name(target, Who::Owner);
        alice
            .put_object()
            .bucket(&owner_bucket)
            .key(SECRET)
            .body(body("alice's secret"))
            .send()
            .await
            .unwrap();
        for (who, client) in &clients {
            let bucket = name(target, *who);
            for op in OPS {
                let tag = format!("{who:?}-{op:?}").to_lowercase();
                alice
                    .put_object()
                    .bucket(&owner_bucket)
                    .key(format!("victim-{tag}.txt"))
                    .body(body("victim"))
                    .send()
                    .await
                    .unwrap();
                let result = match client {
                    Some(c) => run(op, c, &alice, &owner_bucket, &bucket, &tag).await,
                    None => {
                        let (upload, _) = alice_upload(&alice, &owner_bucket, "mp.bin").await;
                        run_anonymous(op, &drive.endpoint, &bucket, &upload).await
                    }
                };
                cells += 1;
                let allow = expected(target, *who, op);
                // HEAD answers carry no error document: the status alone tells.
                let denied = is_denial(&result, matches!(op, Op::HeadBucket | Op::HeadObject));
                if allow == denied || (allow && !succeeded(&result)) {
                    wrong.push(format!(
                        "{target:?} {who:?} {op:?}: expected {}, got {result:?}",
                        if allow { "allow" } else { "deny" }
                    ));
                }
                if let Err(e) = &result
                    && !allow
                {
                    assert!(
                        !e.message.contains("alice-secret"),
                        "{target:?} {who:?} {op:?} leaks a key: {e:?}"
                    );
                }
                // A refused delete deleted nothing.
                if denied && matches!(op, Op::DeleteObject | Op::DeleteObjects) {
                    alice
                        .head_object()
                        .bucket(&owner_bucket)
                        .key(format!("victim-{tag}.txt"))
                        .send()
                        .await
                        .unwrap_or_else(|e| panic!("{target:?} {who:?} {op:?} deleted: {e:?}"));
                }
            }
        }
        // The owner's secret survived everything the others were refused.
        let got = alice
            .get_object()
            .bucket(&owner_bucket)
            .key(SECRET)
            .send()
            .await
            .unwrap();
        assert_eq!(
            got.body.collect().await.unwrap().into_bytes(),
            "alice's secret"
        );
    }
    assert_eq!(cells, 2 * WHO.len() * OPS.len());
    assert!(
        wrong.is_empty(),
        "{} of {cells} cells wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );

    // A denial looks the same for a bucket that exists and one that does not.
    let carol = clients[1].1.clone().unwrap();
    let existing = outcome(carol.list_objects_v2().bucket(alice_home()).send().await).unwrap_err();
    let missing = outcome(
        carol
            .list_objects_v2()
            .bucket("home--000000000000000000000000")
            .send()
            .await,
    )
    .unwrap_err();
    assert_eq!(
        (existing.code, existing.status, existing.message),
        (missing.code, missing.status, missing.message)
    );
    // The name that stands for `_my` in a copy Drive serves again names nothing from outside.
    for (who, client) in [("alice", &alice), ("the admin", &admin)] {
        let refused = outcome(
            client
                .copy_object()
                .bucket("_my")
                .key("stand-in.txt")
                .copy_source("home--alias/own.txt")
                .send()
                .await,
        )
        .unwrap_err();
        assert!(
            matches!(refused.code.as_str(), "AccessDenied" | "NoSuchBucket"),
            "{who}: {refused:?}"
        );
    }
    // Other users' listings never show alice's keys; the admin sees every bucket.
    for (who, client) in &clients[1..4] {
        let c = client.as_ref().unwrap();
        for b in ["_my", "default"] {
            let listed = c.list_objects_v2().bucket(b).send().await.unwrap();
            assert!(
                listed
                    .contents()
                    .iter()
                    .all(|o| !o.key().unwrap_or_default().starts_with("alice-secret")),
                "{who:?} sees alice's keys in {b}"
            );
        }
    }
    let all = admin.list_buckets().send().await.unwrap();
    let names: Vec<_> = all.buckets().iter().filter_map(|b| b.name()).collect();
    assert!(
        names.contains(&alice_home().as_str()) && names.contains(&"ws--team-a"),
        "{names:?}"
    );
}
