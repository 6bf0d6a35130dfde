//! Two Drive processes on one backend (SeaweedFS) and one metadata database (PostgreSQL),
//! as replicas run: a user's first requests race to create their buckets on both, session
//! credentials from one work on the other, and a key revoked on one is refused by the other.

use aws_sdk_s3::primitives::ByteStream;
use s3_compat_tests::database::TestDatabase;
use s3_compat_tests::emulator::Emulator;
use s3_compat_tests::idp::Idp;
use s3_compat_tests::sts::{assume, keys_api, session_client};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_users_buckets_and_keys() {
    let idp = Idp::start().await;
    let db = TestDatabase::create().await;
    let upstream = Emulator::seaweedfs().await;
    let keys = tempfile::tempdir().unwrap();
    let server_key = keys.path().join("server-key");
    std::fs::write(
        &server_key,
        s3_compat_tests::unique("a-shared-server-key-of-enough-length"),
    )
    .unwrap();
    let flags = [
        "--oidc-issuer",
        idp.issuer(),
        "--oidc-audience",
        "urn:drive",
        "--server-key-file",
        server_key.to_str().unwrap(),
        "--database-url",
        db.url(),
    ];
    let a = upstream.drive("replicas", &flags);
    let b = upstream.drive("replicas", &flags);

    // Session credentials from replica A, used on both at once from the first request on.
    let token = idp.password_token("alice").await.access_token;
    let creds = assume(&a.endpoint, &token, None).await.unwrap();
    let (ca, cb) = (
        session_client(&a.endpoint, &creds),
        session_client(&b.endpoint, &creds),
    );
    let puts = (0..24).map(|i| {
        let client = if i % 2 == 0 { &ca } else { &cb };
        let bucket = ["_my", "default", "team-a"][i % 3];
        async move {
            client
                .put_object()
                .bucket(bucket)
                .key(format!("k{i}"))
                .body(ByteStream::from(vec![b'x'; 10]))
                .send()
                .await
                .map_err(|e| format!("put {bucket}/k{i}: {e:?}"))
        }
    });
    for result in futures::future::join_all(puts).await {
        result.unwrap();
    }
    for client in [&ca, &cb] {
        for bucket in ["_my", "default", "team-a"] {
            let listed = client
                .list_objects_v2()
                .bucket(bucket)
                .send()
                .await
                .unwrap();
            assert_eq!(listed.key_count(), Some(8), "{bucket}");
        }
    }

    // A long-term key made on A works on B until it is revoked on A.
    let reply = keys_api(&a.endpoint, "POST", "keys", &token, "").await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let created: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    let id = created["accessKeyId"].as_str().unwrap();
    let secret = created["secretAccessKey"].as_str().unwrap();
    let on_b = s3_compat_tests::client(&b.endpoint, id, secret);
    on_b.list_objects_v2().bucket("_my").send().await.unwrap();
    let reply = keys_api(&a.endpoint, "DELETE", &format!("keys/{id}"), &token, "").await;
    assert_eq!(reply.status, 204);
    let err = on_b
        .list_objects_v2()
        .bucket("_my")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        s3_compat_tests::failure::<(), _, _>(Err(err)),
        ("InvalidAccessKeyId".to_owned(), 403)
    );
    assert!(a.terminate().success() && b.terminate().success());
    db.drop().await;
}
