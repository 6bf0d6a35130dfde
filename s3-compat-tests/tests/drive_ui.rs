//! Drive's file browser (`/_drive/ui/`) in a real headless Chromium (Debian's `chromium`,
//! driven by npm's `playwright-core`, both from `s3-compat-tests/clients/setup.sh`), signed
//! in through the test OpenID provider: a folder upload, a 200 MiB multipart upload resumed
//! after a reload and carried through a network drop, renames in `_my` by server-side copy,
//! dropped files and folders, keyboard navigation, previews of text, CSV and images, share,
//! delete, a second user who sees none of it, paging through a large listing, a hostile file
//! name shown as text, a replayed sign-in and a copied cookie after sign-out refused, and
//! screenshots at desktop and phone width. The browser side is `ui/drive.mjs`; this side
//! checks the big object byte for byte through S3.

use std::io::Write;
use std::path::Path;

use md5::{Digest, Md5};
use s3_compat_tests::browser;
use s3_compat_tests::idp::Idp;
use s3_compat_tests::server::DriveProcess;
use s3_compat_tests::sts::{assume, session_client};

/// A file name that would run script if it were ever treated as HTML.
const HOSTILE: &str = "<img src=x onerror=alert(1)>.txt";
/// Size of the big upload.
const BIG: usize = 200 * 1024 * 1024;
/// Keys in alice's workspace: more than the page lists at once (200).
const PAGED: usize = 205;

/// Writes `len` pseudo-random bytes (xorshift) to `path`; their MD5.
fn random_file(path: &Path, len: usize) -> [u8; 16] {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let mut md5 = Md5::new();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut chunk = vec![0u8; 1024 * 1024];
    for _ in 0..len / chunk.len() {
        for word in chunk.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes());
        }
        md5.update(&chunk);
        file.write_all(&chunk).expect("write");
    }
    file.flush().expect("flush");
    md5.finalize().into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_file_browser_uploads_resumes_shares_and_deletes_in_chromium() {
    browser::tools();
    let idp = Idp::start().await;
    let temp = tempfile::tempdir().expect("temp dir");
    let data = temp.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let drive = DriveProcess::start_in(
        &data,
        &[
            "--oidc-issuer",
            idp.issuer(),
            "--oidc-audience",
            "urn:drive",
            "--oidc-client-id",
            "drive-ui",
            "--oidc-scope",
            "openid email profile groups roles drive",
        ],
    );

    // A folder of small files, a hostile name, and a big file.
    let files = temp.path().join("files");
    let album = files.join("album");
    std::fs::create_dir_all(album.join("notes")).expect("album");
    std::fs::write(album.join("a.txt"), "hello from the file browser\n").expect("a.txt");
    std::fs::write(album.join("b.csv"), "name,size\n\"x, y\",1\nz,2\n").expect("b.csv");
    std::fs::write(album.join("notes/c.txt"), "third\n").expect("c.txt");
    std::fs::write(files.join(HOSTILE), "hostile\n").expect("hostile");
    let big = files.join("big.bin");
    let big_md5 = random_file(&big, BIG);

    // More keys than one listing page holds, in alice's workspace.
    let token = idp.login("alice").await.access_token;
    let creds = assume(&drive.endpoint, &token, None)
        .await
        .expect("STS answers");
    let s3 = session_client(&drive.endpoint, &creds);
    for i in 0..PAGED {
        s3.put_object()
            .bucket("default")
            .key(format!("k-{i:03}"))
            .body(b"x".to_vec().into())
            .send()
            .await
            .expect("put a key");
    }

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("ui/drive.mjs");
    let limit = std::time::Duration::from_secs(600);
    let (code, output) = browser::run(
        &script,
        &[
            ("DRIVE_URL", drive.endpoint.clone()),
            ("ALBUM", album.display().to_string()),
            ("HOSTILE_FILE", files.join(HOSTILE).display().to_string()),
            ("HOSTILE", HOSTILE.to_owned()),
            ("BIG", big.display().to_string()),
            ("BIG_SIZE", BIG.to_string()),
            ("PAGED", PAGED.to_string()),
        ],
        limit,
    )
    .await;
    println!("{output}");
    assert_eq!(code, Some(0), "the browser script failed:\n{output}");

    // The big object, read back as alice through the S3 API, byte for byte.
    let object = s3
        .get_object()
        .bucket("_my")
        .key("big.bin")
        .send()
        .await
        .expect("big.bin is in alice's home bucket");
    let mut body = object.body.into_async_read();
    let mut md5 = Md5::new();
    let mut read = 0usize;
    let mut buf = vec![0u8; 1024 * 1024];
    loop {
        let n = tokio::io::AsyncReadExt::read(&mut body, &mut buf)
            .await
            .expect("read the object");
        if n == 0 {
            break;
        }
        read += n;
        md5.update(&buf[..n]);
    }
    assert_eq!(read, BIG, "the object's size");
    assert_eq!(
        <[u8; 16]>::from(md5.finalize()),
        big_md5,
        "the object's MD5"
    );
    // No multipart upload is left behind, and the deleted folder is gone.
    let uploads = s3
        .list_multipart_uploads()
        .bucket("_my")
        .send()
        .await
        .expect("list uploads");
    assert!(uploads.uploads().is_empty(), "{uploads:?}");
    let album_left = s3
        .list_objects_v2()
        .bucket("_my")
        .prefix("album/")
        .send()
        .await
        .expect("list album");
    assert_eq!(album_left.key_count(), Some(0), "{album_left:?}");

    browser::update_docs(&["drive-desktop.png", "drive-phone.png"]);
    drive.terminate();
    idp.stop().await;
}
