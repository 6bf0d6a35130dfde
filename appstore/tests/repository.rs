//! The bundle repository end to end: imports into real Drive with metadata in SQLite and in
//! PostgreSQL, the invalid bundles of scenario S8, hostile archives, concurrent imports,
//! limits, deletion and the sweeper. Every refusal is checked to leave no row and no object.

mod common;

use common::{BUCKET, Db, ICON, Stack, bundle, bundle_with, manifest, zip};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// Raw zip bytes with full control over names, modes and declared sizes (stored entries),
/// for archives no well-behaved writer produces.
struct RawEntry<'a> {
    name: &'a str,
    data: &'a [u8],
    declared_size: Option<u32>,
    unix_mode: u32,
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn raw_zip(entries: &[RawEntry<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for e in entries {
        let offset = out.len() as u32;
        let size = e.data.len() as u32;
        let declared = e.declared_size.unwrap_or(size);
        let crc = crc32(e.data);
        let name = e.name.as_bytes();
        let common = |v: &mut Vec<u8>| {
            v.extend_from_slice(&0u16.to_le_bytes()); // flags
            v.extend_from_slice(&0u16.to_le_bytes()); // stored
            v.extend_from_slice(&0u16.to_le_bytes()); // time
            v.extend_from_slice(&0x21u16.to_le_bytes()); // 1980-01-01
            v.extend_from_slice(&crc.to_le_bytes());
            v.extend_from_slice(&size.to_le_bytes());
            v.extend_from_slice(&declared.to_le_bytes());
            v.extend_from_slice(&(name.len() as u16).to_le_bytes());
            v.extend_from_slice(&0u16.to_le_bytes()); // extra
        };
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&20u16.to_le_bytes());
        common(&mut out);
        out.extend_from_slice(name);
        out.extend_from_slice(e.data);
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&(3u16 << 8 | 20).to_le_bytes()); // made by unix
        central.extend_from_slice(&20u16.to_le_bytes());
        common(&mut central);
        central.extend_from_slice(&0u16.to_le_bytes()); // comment
        central.extend_from_slice(&0u16.to_le_bytes()); // disk
        central.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
        central.extend_from_slice(&(e.unix_mode << 16).to_le_bytes());
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name);
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

fn file<'a>(name: &'a str, data: &'a [u8]) -> RawEntry<'a> {
    RawEntry {
        name,
        data,
        declared_size: None,
        unix_mode: 0o100_644,
    }
}

/// A raw bundle: a valid `app.toml` plus `extra`.
fn raw_bundle(extra: RawEntry<'_>) -> Vec<u8> {
    let toml = manifest("ai.h2o.test.hostile", "1.0.0", "");
    raw_zip(&[file("app.toml", toml.as_bytes()), extra])
}

/// Asserts a refusal with `status`, `code` and (when given) `field`.
fn refused(
    answer: &(StatusCode, Value),
    status: StatusCode,
    code: &str,
    field: Option<&str>,
    case: &str,
) {
    let (got, body) = answer;
    assert_eq!(*got, status, "{case}: {body}");
    assert_eq!(body["code"], code, "{case}: {body}");
    if let Some(field) = field {
        assert_eq!(body["field"], field, "{case}: {body}");
    }
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{case}: a refusal explains itself: {body}"
    );
}

async fn get_bytes(stack: &Stack, path: &str, user: Option<&str>) -> (StatusCode, Vec<u8>) {
    let mut request = stack.http.get(format!("{}{path}", stack.url));
    if let Some(u) = user {
        request = request.bearer_auth(stack.token(u).await);
    }
    let response = request.send().await.expect("answer");
    let status = response.status();
    (status, response.bytes().await.expect("body").to_vec())
}

/// Import, read back through Drive's S3 API and the API, refuse a duplicate, list, delete.
async fn import_round_trip(db: Db) {
    let stack = Stack::start(db).await;
    let app_toml = manifest("ai.h2o.test.hello", "0.0.1", "").replace(
        "[Runtime]",
        "LongDescription = \"docs/about.md\"\n\n[Runtime]",
    );
    let about = "### Hello\n\n- a markdown long description\n";
    let original = zip(&[
        ("app.toml", app_toml.as_bytes()),
        ("app.py", b"from h2o_wave import main, app, Q, ui\n"),
        ("docs/about.md", about.as_bytes()),
        ("static/icon.png", ICON),
        ("static/screenshot-2.png", ICON),
        ("static/screenshot-1.png", ICON),
    ]);
    let (status, app) = stack
        .import("alice", original.clone(), Some("ALL_USERS"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{app}");
    let id = app["id"].as_str().expect("an app id").to_owned();
    assert_eq!(id.len(), 36);
    assert_eq!(app["title"], "Hello");
    assert_eq!(app["version"], "0.0.1");
    assert_eq!(app["name"], "ai.h2o.test.hello");
    assert_eq!(app["visibility"], "ALL_USERS");
    assert_eq!(app["owner"], "alice");
    assert_eq!(app["lifecycle"], "ON_DEMAND");
    assert_eq!(app["manifest"]["Runtime"]["Module"], "app");

    // The bundle and icon really are in Drive, byte for byte.
    let s3 = stack.s3();
    let stored = s3_compat_tests::get(&s3, BUCKET, &format!("apps/{id}/bundle.wave")).await;
    assert_eq!(stored, original, "the bundle in Drive is the uploaded one");
    assert_eq!(app["bundleSize"], original.len());
    let icon = s3_compat_tests::get(&s3, BUCKET, &format!("apps/{id}/icon.png")).await;
    assert_eq!(icon, ICON);

    // And back out through the API.
    let (status, got) =
        get_bytes(&stack, &format!("/api/v1/apps/{id}/bundle"), Some("alice")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, original);
    let (status, got) = get_bytes(&stack, &format!("/api/v1/apps/{id}/icon"), Some("bob")).await;
    assert_eq!((status, got.as_slice()), (StatusCode::OK, ICON));
    let (status, fetched) = stack
        .call(
            Method::GET,
            &format!("/api/v1/apps/{id}"),
            Some("bob"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched["id"], id.as_str());
    assert_eq!(fetched["hasLongDescription"], true);
    let (status, text) = get_bytes(
        &stack,
        &format!("/api/v1/apps/{id}/long-description"),
        Some("bob"),
    )
    .await;
    assert_eq!(
        (status, String::from_utf8(text).unwrap()),
        (StatusCode::OK, about.to_owned())
    );
    // Screenshots in name order, stored in Drive, served by index.
    let shots = fetched["screenshotUrls"]
        .as_array()
        .expect("screenshot URLs");
    assert_eq!(shots.len(), 2);
    for (i, url) in shots.iter().enumerate() {
        assert_eq!(url, &format!("/api/v1/apps/{id}/screenshots/{i}"));
        let (status, bytes) = get_bytes(&stack, url.as_str().unwrap(), Some("bob")).await;
        assert_eq!((status, bytes.as_slice()), (StatusCode::OK, ICON));
        let stored =
            s3_compat_tests::get(&s3, BUCKET, &format!("apps/{id}/screenshots/{i:02}.png")).await;
        assert_eq!(stored, ICON);
    }
    let (status, _) = get_bytes(
        &stack,
        &format!("/api/v1/apps/{id}/screenshots/2"),
        Some("bob"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Filters by owner and visibility.
    let (_, mine) = stack
        .call(Method::GET, "/api/v1/apps?owner=alice", Some("bob"), None)
        .await;
    assert_eq!(mine["apps"].as_array().map(Vec::len), Some(1));
    let (_, nobody) = stack
        .call(Method::GET, "/api/v1/apps?owner=bob", Some("bob"), None)
        .await;
    assert_eq!(nobody["apps"].as_array().map(Vec::len), Some(0));
    let (_, private) = stack
        .call(
            Method::GET,
            "/api/v1/apps?visibility=PRIVATE",
            Some("alice"),
            None,
        )
        .await;
    assert_eq!(private["apps"].as_array().map(Vec::len), Some(0));
    let (_, all) = stack
        .call(
            Method::GET,
            "/api/v1/apps?visibility=all_users",
            Some("alice"),
            None,
        )
        .await;
    assert_eq!(all["apps"].as_array().map(Vec::len), Some(1));

    // The same name and version again: refused, nothing added.
    let (rows, objects) = (stack.rows().await, stack.objects().await);
    let again = stack.import("bob", original.clone(), None).await;
    refused(
        &again,
        StatusCode::CONFLICT,
        "app-exists",
        Some("App.Version"),
        "duplicate",
    );
    assert_eq!((stack.rows().await, stack.objects().await), (rows, objects));

    // Listing pages through every app in a stable order.
    for v in ["0.0.2", "0.1.0", "1.0.0"] {
        let (status, body) = stack
            .import("alice", bundle("ai.h2o.test.hello", v), Some("ALL_USERS"))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut path = "/api/v1/apps?pageSize=2&name=ai.h2o.test.hello".to_owned();
        if let Some(t) = &token {
            path.push_str(&format!("&pageToken={t}"));
        }
        let (status, page) = stack.call(Method::GET, &path, Some("bob"), None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let apps = page["apps"].as_array().expect("apps");
        assert!(apps.len() <= 2);
        seen.extend(
            apps.iter()
                .map(|a| a["version"].as_str().unwrap().to_owned()),
        );
        match page["nextPageToken"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ["0.0.1", "0.0.2", "0.1.0", "1.0.0"]);
    let (_, found) = stack
        .call(
            Method::GET,
            "/api/v1/apps?q=HELLO&pageSize=10",
            Some("bob"),
            None,
        )
        .await;
    assert_eq!(
        found["apps"].as_array().map(Vec::len),
        Some(4),
        "search is case-insensitive"
    );
    let (_, none) = stack
        .call(Method::GET, "/api/v1/apps?q=%25", Some("bob"), None)
        .await;
    assert_eq!(
        none["apps"].as_array().map(Vec::len),
        Some(0),
        "% is matched literally"
    );

    // An app with an instance cannot be deleted; without, its row and objects go.
    let pool = appstore::repository::Repository::open(&stack.database_url)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO instances (id, app_id, owner_subject, owner_name, principal, visibility, \
         routing_mode, token_hash, suspended, created_at, updated_at) \
         VALUES ('i-1', $1, 'x', 'x', '{}', 'PRIVATE', 'DOMAIN', 'h', 0, 0, 0)",
    )
    .bind(&id)
    .execute(pool.pool())
    .await
    .unwrap();
    let blocked = stack
        .call(
            Method::DELETE,
            &format!("/api/v1/apps/{id}"),
            Some("alice"),
            None,
        )
        .await;
    refused(
        &blocked,
        StatusCode::CONFLICT,
        "app-has-instances",
        None,
        "delete with an instance",
    );
    sqlx::query("DELETE FROM instances")
        .execute(pool.pool())
        .await
        .unwrap();
    let (status, _) = stack
        .call(
            Method::DELETE,
            &format!("/api/v1/apps/{id}"),
            Some("alice"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(
        !stack.objects().await.iter().any(|k| k.contains(&id)),
        "the deleted app's objects are gone"
    );
    let (status, _) = stack
        .call(
            Method::GET,
            &format!("/api/v1/apps/{id}"),
            Some("alice"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(stack.rows().await, 3);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_round_trip_through_drive_on_sqlite() {
    import_round_trip(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_round_trip_through_drive_on_postgres() {
    import_round_trip(Db::Postgres).await;
}

/// Scenario S8's bundles and the other `app.toml` rules: each refused with the field named,
/// the allowed ones accepted; nothing left behind by a refusal.
async fn invalid_bundles(db: Db) {
    let stack = Stack::start(db).await;
    let long_name = "a".repeat(64);
    let refusals: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        (
            "name -bad",
            bundle_with(&manifest("-bad", "0.0.1", "")),
            "invalid-manifest",
            "App.Name",
        ),
        (
            "64-character name",
            bundle_with(&manifest(&long_name, "0.0.1", "")),
            "invalid-manifest",
            "App.Name",
        ),
        (
            "version not semver",
            bundle_with(&manifest("ai.h2o.test.v", "1.0", "")),
            "invalid-manifest",
            "App.Version",
        ),
        (
            "H2O_WAVE_LISTEN",
            bundle_with(&manifest(
                "ai.h2o.test.env",
                "0.0.1",
                "\n[[Env]]\nName = \"H2O_WAVE_LISTEN\"\nValue = \":1\"\n",
            )),
            "invalid-manifest",
            "Env[0].Name",
        ),
        (
            "H2O_CLOUD_ prefix",
            bundle_with(&manifest(
                "ai.h2o.test.env",
                "0.0.1",
                "\n[[Env]]\nName = \"H2O_CLOUD_ENVIRONMENT\"\nValue = \"x\"\n",
            )),
            "invalid-manifest",
            "Env[0].Name",
        ),
        (
            "LINK with [Runtime]",
            bundle_with(
                "[App]\nName = \"ai.h2o.test.link\"\nVersion = \"0.0.1\"\nInstanceLifecycle = \"LINK\"\n\n[Runtime]\nModule = \"app\"\n\n[Link]\nAddress = \"https://example.com\"\n",
            ),
            "invalid-manifest",
            "Runtime",
        ),
        (
            "unknown runtime",
            bundle_with(&manifest(
                "ai.h2o.test.rt",
                "0.0.1",
                "RuntimeVersion = \"cobol85\"\n",
            )),
            "invalid-manifest",
            "Runtime.RuntimeVersion",
        ),
        (
            "missing Module",
            bundle_with("[App]\nName = \"ai.h2o.test.mod\"\nVersion = \"0.0.1\"\n\n[Runtime]\n"),
            "invalid-manifest",
            "Runtime.Module",
        ),
        (
            "unknown key",
            bundle_with(&manifest("ai.h2o.test.key", "0.0.1", "Colour = \"red\"\n")),
            "invalid-manifest",
            "app.toml",
        ),
        (
            "long description missing",
            bundle_with(
                &manifest("ai.h2o.test.ld", "0.0.1", "")
                    .replace("[Runtime]", "LongDescription = \"nope.md\"\n\n[Runtime]"),
            ),
            "invalid-manifest",
            "App.LongDescription",
        ),
        (
            "required secret",
            bundle_with(&manifest(
                "ai.h2o.test.secret",
                "0.0.1",
                "\n[[Env]]\nName = \"TOKEN\"\nSecret = \"api\"\nSecretKey = \"token\"\n",
            )),
            "unknown-secret",
            "Env[0]",
        ),
        (
            "unknown tag",
            bundle_with(
                &manifest("ai.h2o.test.tag", "0.0.1", "")
                    .replace("[Runtime]", "Tags = [\"nope\"]\n\n[Runtime]"),
            ),
            "unknown-tag",
            "App.Tags",
        ),
        (
            "small icon",
            zip(&[
                (
                    "app.toml",
                    manifest("ai.h2o.test.icon", "0.0.1", "").as_bytes(),
                ),
                ("static/icon.png", &common_png(300)),
            ]),
            "invalid-asset",
            "static/icon.png",
        ),
        (
            "no app.toml",
            zip(&[("app.py", b"print(1)")]),
            "missing-manifest",
            "app.toml",
        ),
    ];
    let (rows, objects) = (stack.rows().await, stack.objects().await);
    for (case, body, code, field) in refusals {
        let answer = stack.import("alice", body, None).await;
        let (status, json) = &answer;
        assert_eq!(*status, StatusCode::BAD_REQUEST, "{case}: {json}");
        assert_eq!(json["code"], code, "{case}: {json}");
        let got = json["field"].as_str().unwrap_or_default();
        assert!(
            got.starts_with(field),
            "{case}: field {got:?}, want {field:?}: {json}"
        );
    }
    assert_eq!(
        (stack.rows().await, stack.objects().await),
        (rows, objects),
        "refusals leave nothing"
    );

    let accepted = [
        bundle_with(&manifest(
            "ai.h2o.test.size",
            "0.0.1",
            "\n[[Env]]\nName = \"H2O_WAVE_MAX_REQUEST_SIZE\"\nValue = \"20M\"\n",
        )),
        bundle_with(&manifest(
            "ai.h2o.test.optional",
            "0.0.1",
            "\n[[Env]]\nName = \"TOKEN\"\nSecret = \"api\"\nSecretKey = \"token\"\nOptional = true\n",
        )),
        bundle_with(
            "[App]\nName = \"ai.h2o.test.link\"\nVersion = \"0.0.1\"\nInstanceLifecycle = \"link\"\n\n[Link]\nAddress = \"https://example.com\"\n",
        ),
        bundle_with(
            "[App]\nName = \"ai.h2o.test.managed\"\nVersion = \"1.2.3-rc.1\"\nInstanceLifecycle = \"Managed\"\nCategory = \"legacy\"\n\n[Runtime]\nModule = \"src.app\"\nRoutingMode = \"BASE_URL\"\n",
        ),
    ];
    for body in accepted {
        let (status, json) = stack.import("alice", body, None).await;
        assert_eq!(status, StatusCode::CREATED, "{json}");
    }
    let (_, link) = stack
        .call(
            Method::GET,
            "/api/v1/apps?name=ai.h2o.test.link",
            Some("alice"),
            None,
        )
        .await;
    assert_eq!(link["apps"][0]["lifecycle"], "LINK");
    assert_eq!(link["apps"][0]["runtimeVersion"], Value::Null);
    stack.stop().await;
}

/// A PNG header of a `size`×`size` image (the icon checks read only the header).
fn common_png(size: u32) -> Vec<u8> {
    let mut b = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    b.extend_from_slice(&size.to_be_bytes());
    b.extend_from_slice(&size.to_be_bytes());
    b.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_bundles_are_refused_naming_the_field_on_sqlite() {
    invalid_bundles(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_bundles_are_refused_naming_the_field_on_postgres() {
    invalid_bundles(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_archives_are_refused_and_leave_nothing() {
    let stack = Stack::start_with(Db::Sqlite, |a| {
        a.max_bundle_bytes = Some(1 << 20);
        a.max_bundle_files = Some(20);
    })
    .await;
    let toml = manifest("ai.h2o.test.hostile", "1.0.0", "");
    let many: Vec<(String, Vec<u8>)> = (0..30).map(|i| (format!("f{i}.txt"), vec![b'x'])).collect();
    let mut many_entries: Vec<(&str, &[u8])> = many
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    many_entries.push(("app.toml", toml.as_bytes()));
    let zeros = vec![0u8; 50 << 20];
    let bomb = zip(&[("app.toml", toml.as_bytes()), ("data.bin", &zeros)]);
    assert!(bomb.len() < 1 << 20, "the bomb itself is small");
    let symlink = raw_bundle(RawEntry {
        name: "static/link",
        data: b"../../../etc/passwd",
        declared_size: None,
        unix_mode: 0o120_777,
    });
    let cases: Vec<(&str, Vec<u8>, StatusCode, &[&str])> = vec![
        (
            "zip-slip",
            raw_bundle(file("../evil.py", b"x")),
            StatusCode::BAD_REQUEST,
            &["path-traversal"],
        ),
        (
            "nested zip-slip",
            raw_bundle(file("static/../../evil.py", b"x")),
            StatusCode::BAD_REQUEST,
            &["path-traversal"],
        ),
        (
            "absolute path",
            raw_bundle(file("/etc/cron.d/evil", b"x")),
            StatusCode::BAD_REQUEST,
            &["absolute-path"],
        ),
        (
            "windows path",
            raw_bundle(file("C:\\evil.bat", b"x")),
            StatusCode::BAD_REQUEST,
            &["absolute-path", "unsafe-path"],
        ),
        ("symlink", symlink, StatusCode::BAD_REQUEST, &["symlink"]),
        (
            "duplicate entry",
            raw_bundle(file("app.toml", b"[App]\n")),
            StatusCode::BAD_REQUEST,
            &["duplicate-entry"],
        ),
        (
            "too many files",
            zip(&many_entries),
            StatusCode::BAD_REQUEST,
            &["too-many-files"],
        ),
        (
            "declared size lies",
            raw_bundle(RawEntry {
                name: "app.py",
                data: b"print('hello')\n",
                declared_size: Some(4),
                unix_mode: 0o100_644,
            }),
            StatusCode::BAD_REQUEST,
            &["size-mismatch", "corrupt"],
        ),
        ("zip bomb", bomb, StatusCode::BAD_REQUEST, &["zip-bomb"]),
        (
            "not a zip",
            b"#!/bin/sh\nrm -rf /\n".to_vec(),
            StatusCode::BAD_REQUEST,
            &["not-zip"],
        ),
        (
            "over the upload limit",
            vec![7u8; 2 << 20],
            StatusCode::PAYLOAD_TOO_LARGE,
            &["bundle-too-large"],
        ),
    ];
    for (case, body, status, codes) in cases {
        let (got, json) = stack.import("alice", body, None).await;
        assert_eq!(got, status, "{case}: {json}");
        let code = json["code"].as_str().unwrap_or_default();
        assert!(
            codes.contains(&code),
            "{case}: code {code:?}, want one of {codes:?}: {json}"
        );
    }
    assert_eq!(stack.rows().await, 0, "no row behind");
    assert!(stack.objects().await.is_empty(), "no object behind");
    let spool: Vec<_> = std::fs::read_dir(stack_spool(&stack))
        .map(|d| d.collect())
        .unwrap_or_default();
    assert!(spool.is_empty(), "no spooled upload behind: {spool:?}");
    stack.stop().await;
}

fn stack_spool(stack: &Stack) -> std::path::PathBuf {
    let db = stack.database_url.trim_start_matches("sqlite://");
    std::path::Path::new(db.split('?').next().unwrap())
        .parent()
        .unwrap()
        .join("appstore/spool")
}

/// Ten parallel imports of one name and version: exactly one wins, the others get 409,
/// and only the winner's row and objects exist.
async fn concurrent_imports(db: Db) {
    let stack = Stack::start(db).await;
    let token = stack.token("alice").await;
    let original = bundle("ai.h2o.test.race", "1.0.0");
    let answers = futures::future::join_all(
        (0..10).map(|_| stack.import_with_token(&token, original.clone(), None)),
    )
    .await;
    let won: Vec<_> = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .collect();
    let lost = answers
        .iter()
        .filter(|(s, b)| *s == StatusCode::CONFLICT && b["code"] == "app-exists")
        .count();
    assert_eq!(won.len(), 1, "{answers:?}");
    assert_eq!(lost, 9, "{answers:?}");
    let id = won[0].1["id"].as_str().unwrap();
    assert_eq!(stack.rows().await, 1);
    let objects = stack.objects().await;
    assert!(
        !objects.is_empty()
            && objects
                .iter()
                .all(|k| k.starts_with(&format!("apps/{id}/"))),
        "{objects:?}"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_imports_of_one_version_on_postgres() {
    concurrent_imports(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_imports_of_one_version_on_sqlite() {
    concurrent_imports(Db::Sqlite).await;
}

/// AppVersionLimit per user, under concurrency too; admins are not limited.
async fn version_limit(db: Db) {
    let stack = Stack::start_with(db, |a| a.app_version_limit = Some(2)).await;
    for v in ["1.0.0", "1.0.1"] {
        assert_eq!(
            stack
                .import("bob", bundle("ai.h2o.test.limit", v), None)
                .await
                .0,
            StatusCode::CREATED
        );
    }
    let third = stack
        .import("bob", bundle("ai.h2o.test.limit", "1.0.2"), None)
        .await;
    refused(
        &third,
        StatusCode::CONFLICT,
        "app-version-limit",
        None,
        "third version",
    );
    assert_eq!(
        stack
            .import("alice", bundle("ai.h2o.test.limit", "2.0.0"), None)
            .await
            .0,
        StatusCode::CREATED
    );
    for v in ["3.0.0", "3.0.1", "3.0.2"] {
        assert_eq!(
            stack
                .import("dave", bundle("ai.h2o.test.limit", v), None)
                .await
                .0,
            StatusCode::CREATED
        );
    }
    // Six imports at once by one user with a limit of 2: exactly two win.
    let token = stack.token("carol").await;
    let bodies: Vec<Vec<u8>> = (0..6)
        .map(|i| bundle("ai.h2o.test.burst", &format!("1.0.{i}")))
        .collect();
    let answers = futures::future::join_all(
        bodies
            .into_iter()
            .map(|b| stack.import_with_token(&token, b, None)),
    )
    .await;
    let won: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .map(|(_, b)| b)
        .collect();
    let limited = answers
        .iter()
        .filter(|(s, b)| *s == StatusCode::CONFLICT && b["code"] == "app-version-limit")
        .count();
    assert_eq!((won.len(), limited), (2, 4), "{answers:?}");
    // Deleting one gives its slot back.
    let id = won[0]["id"].as_str().unwrap();
    let (status, _) = stack
        .call(
            Method::DELETE,
            &format!("/api/v1/apps/{id}"),
            Some("carol"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = stack
        .import("carol", bundle("ai.h2o.test.burst", "2.0.0"), None)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_version_limit_holds_per_user_on_sqlite() {
    version_limit(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_version_limit_holds_per_user_on_postgres() {
    version_limit(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_migrate_once() {
    let database = s3_compat_tests::database::TestDatabase::create().await;
    let url = database.url().to_owned();
    let opened =
        futures::future::join_all((0..4).map(|_| appstore::repository::Repository::open(&url)))
            .await;
    for repo in &opened {
        assert!(repo.is_ok(), "{:?}", repo.as_ref().err());
    }
    let repo = opened.into_iter().next().unwrap().unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(repo.pool())
        .await
        .unwrap();
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .count();
    assert_eq!(
        applied,
        i64::try_from(migrations).unwrap(),
        "each migration applied once"
    );
    drop(repo);
    database.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_removes_abandoned_imports_and_orphaned_objects() {
    let stack = Stack::start(Db::Sqlite).await;
    let (status, kept) = stack
        .import("alice", bundle("ai.h2o.test.kept", "1.0.0"), None)
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let s3 = stack.s3();
    // A replica died mid-import an hour ago: a row in 'importing' and its bundle.
    let repo = appstore::repository::Repository::open(&stack.database_url)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO apps (id, name, version, state, title, description, long_description, \
         owner_subject, owner_name, visibility, lifecycle, manifest, bundle_key, bundle_size, \
         bundle_sha256, screenshots, created_at, updated_at) VALUES ('dead', 'ai.h2o.test.dead', \
         '1.0.0', 'importing', 't', '', '', 's', 'n', 'PRIVATE', 'ON_DEMAND', '{}', \
         'apps/dead/bundle.wave', 1, '', '[]', 0, 0)",
    )
    .execute(repo.pool())
    .await
    .unwrap();
    s3_compat_tests::put(&s3, BUCKET, "apps/dead/bundle.wave", b"x".to_vec()).await;
    // Objects whose row is gone.
    s3_compat_tests::put(&s3, BUCKET, "apps/orphan/bundle.wave", b"y".to_vec()).await;
    s3_compat_tests::put(&s3, BUCKET, "apps/orphan/icon.png", b"z".to_vec()).await;

    let config = appstore::config::Config::resolve(common::args(
        std::path::Path::new("/nonexistent"),
        &stack.drive_endpoint,
        stack.idp.issuer(),
        &stack.database_url,
        &stack.url,
    ))
    .unwrap();
    let importer = appstore::import::Importer::new(
        repo.clone(),
        appstore::store::Store::new(&config.drive),
        appstore::import::ImportSettings {
            max_bundle_bytes: 1 << 20,
            limits: config.limits.clone(),
            app_version_limit: 10,
            policy: appstore::bundle::manifest::Policy::default(),
            spool_dir: std::env::temp_dir(),
        },
    );
    assert_eq!(importer.sweep().await.unwrap(), 2);
    let objects = stack.objects().await;
    let kept_id = kept["id"].as_str().unwrap();
    assert!(
        objects
            .iter()
            .all(|k| k.starts_with(&format!("apps/{kept_id}/"))),
        "{objects:?}"
    );
    assert_eq!(stack.rows().await, 1);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drive_outage_fails_imports_cleanly_and_readiness_says_so() {
    let mut stack = Stack::start(Db::Sqlite).await;
    let (status, _) = stack
        .import("alice", bundle("ai.h2o.test.before", "1.0.0"), None)
        .await;
    assert_eq!(status, StatusCode::CREATED);
    stack.stop_drive();
    let answer = stack
        .import("alice", bundle("ai.h2o.test.outage", "1.0.0"), None)
        .await;
    refused(
        &answer,
        StatusCode::SERVICE_UNAVAILABLE,
        "drive-unavailable",
        None,
        "Drive down",
    );
    assert_eq!(stack.rows().await, 1, "the failed import left no row");
    let ready = stack
        .http
        .get(format!("{}/readyz", stack.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(ready.text().await.unwrap().starts_with("drive:"));
    // Metadata still answers.
    let (status, list) = stack
        .call(Method::GET, "/api/v1/apps", Some("alice"), None)
        .await;
    assert_eq!(
        (status, list["apps"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(1))
    );
    stack.stop().await;
}
