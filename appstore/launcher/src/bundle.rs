//! The app bundle: downloading it from the App Store and unpacking it into the app directory.
//!
//! The App Store validated the bundle when it was imported; unpacking checks it again anyway,
//! so a bundle that got past that (or was swapped since) still cannot write outside the app
//! directory or fill the disk.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use tokio::io::AsyncWriteExt;
use zip::ZipArchive;

use crate::settings::Settings;

// The file-type bits of a unix mode.
const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFLNK: u32 = 0o120_000;

/// How much a bundle may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most entries, directories included.
    pub max_entries: usize,
    /// Most bytes all files may inflate to, together.
    pub max_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entries: 10_000,
            max_bytes: 4 << 30,
        }
    }
}

/// Why the bundle could not be fetched or unpacked.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The download did not complete.
    #[error("bundle download failed: {0}")]
    Request(#[source] reqwest::Error),
    /// The App Store answered the download with an error status.
    #[error("bundle download failed: HTTP {0}")]
    Status(u16),
    /// Reading or writing local files failed.
    #[error("cannot unpack the bundle: {0}")]
    Io(#[from] io::Error),
    /// The bundle is not a zip archive.
    #[error("the bundle is not a readable zip archive: {0}")]
    NotZip(String),
    /// The bundle has more entries than allowed.
    #[error("the bundle has more than {0} entries")]
    TooManyEntries(usize),
    /// The bundle inflates to more bytes than allowed.
    #[error("the bundle unpacks to more than {0} bytes")]
    TooLarge(u64),
    /// An entry's name could lead outside the app directory.
    #[error("bundle entry `{}` is refused: {why}", .path.escape_debug())]
    UnsafePath { path: String, why: &'static str },
    /// An entry is a symbolic link.
    #[error("bundle entry `{}` is a symbolic link", .0.escape_debug())]
    Symlink(String),
    /// An entry is neither a regular file nor a directory.
    #[error("bundle entry `{}` is not a regular file or directory", .0.escape_debug())]
    Special(String),
    /// An entry is encrypted.
    #[error("bundle entry `{}` is encrypted", .0.escape_debug())]
    Encrypted(String),
    /// An entry's data cannot be read.
    #[error("bundle entry `{}` is corrupt: {reason}", .path.escape_debug())]
    Corrupt { path: String, reason: String },
}

/// Downloads this instance's bundle into an anonymous temporary file, rewound to its start.
pub async fn download(client: &reqwest::Client, settings: &Settings) -> Result<File, BundleError> {
    let mut response = client
        .get(settings.launcher_url("bundle"))
        .bearer_auth(settings.token.expose())
        .send()
        .await
        .map_err(BundleError::Request)?;
    if !response.status().is_success() {
        return Err(BundleError::Status(response.status().as_u16()));
    }
    let mut out = tokio::fs::File::from_std(tempfile::tempfile()?);
    while let Some(chunk) = response.chunk().await.map_err(BundleError::Request)? {
        out.write_all(&chunk).await?;
    }
    out.flush().await?;
    let mut file = out.into_std().await;
    file.rewind()?;
    Ok(file)
}

/// One checked entry, ready to be written.
struct Planned {
    /// Index in the archive.
    index: usize,
    /// Normalized, '/'-separated path below the app directory.
    path: String,
    is_dir: bool,
    executable: bool,
}

/// Checks every entry of `bundle`, then replaces the contents of `dir` (created if needed) with
/// the bundle's files. Returns how many files were written.
pub fn unpack(bundle: File, dir: &Path, limits: &Limits) -> Result<usize, BundleError> {
    let mut zip =
        ZipArchive::new(BufReader::new(bundle)).map_err(|e| BundleError::NotZip(e.to_string()))?;
    let plan = check(&mut zip, limits)?;
    fs::create_dir_all(dir)?;
    clear(dir)?;
    let written = extract(&mut zip, &plan, dir, limits);
    if written.is_err() {
        // Best effort: the next start clears the directory again anyway.
        let _ = clear(dir);
    }
    written
}

/// Checks names, types and declared sizes before anything is written.
fn check(
    zip: &mut ZipArchive<BufReader<File>>,
    limits: &Limits,
) -> Result<Vec<Planned>, BundleError> {
    if zip.len() > limits.max_entries {
        return Err(BundleError::TooManyEntries(limits.max_entries));
    }
    let mut plan = Vec::with_capacity(zip.len());
    let mut declared = 0u64;
    for index in 0..zip.len() {
        let f = zip.by_index_raw(index).map_err(|e| BundleError::Corrupt {
            path: format!("#{index}"),
            reason: e.to_string(),
        })?;
        let name = f.name().map_err(|e| BundleError::Corrupt {
            path: String::from_utf8_lossy(f.name_raw()).into_owned(),
            reason: e.to_string(),
        })?;
        let (path, named_dir) = normalize(&name)?;
        let mode = f.unix_mode();
        let is_dir = match mode.map(|m| m & S_IFMT) {
            None | Some(0) => named_dir,
            Some(S_IFREG) if !named_dir => false,
            Some(S_IFDIR) => true,
            Some(S_IFLNK) => return Err(BundleError::Symlink(path)),
            Some(_) => return Err(BundleError::Special(path)),
        };
        if f.is_symlink() {
            return Err(BundleError::Symlink(path));
        }
        if f.encrypted() {
            return Err(BundleError::Encrypted(path));
        }
        declared = declared.saturating_add(f.size());
        let executable = mode.is_some_and(|m| m & 0o111 != 0);
        plan.push(Planned {
            index,
            path,
            is_dir,
            executable,
        });
    }
    if declared > limits.max_bytes {
        return Err(BundleError::TooLarge(limits.max_bytes));
    }
    Ok(plan)
}

/// Checks an entry name; returns its normalized path and whether it names a directory.
fn normalize(name: &str) -> Result<(String, bool), BundleError> {
    let refuse = |why| {
        let path = name.to_owned();
        Err(BundleError::UnsafePath { path, why })
    };
    if name.chars().any(char::is_control) {
        return refuse("control character in the name");
    }
    let drive = matches!(name.as_bytes(), [d, b':', ..] if d.is_ascii_alphabetic());
    if drive || name.starts_with('/') {
        return refuse("absolute path");
    }
    if name.contains('\\') {
        return refuse("backslash in the name");
    }
    if name.split('/').any(|s| s == "..") {
        return refuse("`..` in the path");
    }
    let rel = name.strip_prefix("./").unwrap_or(name);
    let (rel, is_dir) = rel.strip_suffix('/').map_or((rel, false), |d| (d, true));
    if rel.split('/').any(|s| s.is_empty() || s == ".") {
        return refuse("empty or `.` path segment");
    }
    Ok((rel.to_owned(), is_dir))
}

/// Removes everything inside `dir`, keeping `dir` itself (it may be a mount point).
fn clear(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            fs::remove_dir_all(entry.path())?;
        } else {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Writes the planned entries below `dir`, counting the bytes they really inflate to.
fn extract(
    zip: &mut ZipArchive<BufReader<File>>,
    plan: &[Planned],
    dir: &Path,
    limits: &Limits,
) -> Result<usize, BundleError> {
    let mut total = 0u64;
    let mut files = 0;
    let mut buf = vec![0u8; 64 * 1024];
    for entry in plan {
        let target = dir.join(&entry.path);
        if entry.is_dir {
            fs::create_dir_all(&target)?;
            continue;
        }
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)?;
        }
        let mode = if entry.executable { 0o755 } else { 0o644 };
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&target)?;
        let corrupt = |e: &dyn std::fmt::Display| BundleError::Corrupt {
            path: entry.path.clone(),
            reason: e.to_string(),
        };
        let mut f = zip.by_index(entry.index).map_err(|e| corrupt(&e))?;
        loop {
            let n = match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(corrupt(&e)),
            };
            total += n as u64;
            if total > limits.max_bytes {
                return Err(BundleError::TooLarge(limits.max_bytes));
            }
            out.write_all(&buf[..n])?;
        }
        files += 1;
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use zip::write::{SimpleFileOptions, ZipWriter};

    /// A bundle file of `entries`; names ending in `/` are directories.
    fn bundle(entries: &[(&str, &[u8])]) -> File {
        let mut w = ZipWriter::new(Cursor::new(Vec::new()));
        let options = SimpleFileOptions::default();
        for (name, data) in entries {
            if name.ends_with('/') {
                w.add_directory(*name, options).unwrap();
            } else {
                w.start_file(*name, options).unwrap();
                w.write_all(data).unwrap();
            }
        }
        to_file(w)
    }

    fn to_file(w: ZipWriter<Cursor<Vec<u8>>>) -> File {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&w.finish().unwrap().into_inner()).unwrap();
        file.rewind().unwrap();
        file
    }

    /// A scratch root with the app directory `root/app` inside it.
    fn scratch() -> (tempfile::TempDir, std::path::PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let app = root.path().join("app");
        (root, app)
    }

    /// Every path below `root`, sorted, relative to it.
    fn tree(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut todo = vec![root.to_path_buf()];
        while let Some(dir) = todo.pop() {
            for entry in fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.push(rel);
                if path.is_dir() {
                    todo.push(path);
                }
            }
        }
        out.sort();
        out
    }

    /// Asserts that `file` is refused, leaving nothing at all below the scratch root.
    fn refused(file: File, limits: &Limits) -> BundleError {
        let (root, app) = scratch();
        let e = unpack(file, &app, limits).unwrap_err();
        assert_eq!(tree(root.path()), Vec::<String>::new(), "{e}");
        e
    }

    #[test]
    fn nested_files_are_unpacked() {
        let (root, app) = scratch();
        let file = bundle(&[
            ("app.py", b"print(1)"),
            ("static/", b""),
            ("static/css/site.css", b"body{}"),
            ("./lib/util.py", b"x = 1"),
        ]);
        assert_eq!(unpack(file, &app, &Limits::default()).unwrap(), 3);
        let want = [
            "app",
            "app/app.py",
            "app/lib",
            "app/lib/util.py",
            "app/static",
            "app/static/css",
            "app/static/css/site.css",
        ];
        assert_eq!(tree(root.path()), want);
        let css = fs::read(app.join("static/css/site.css")).unwrap();
        assert_eq!(css, b"body{}");
    }

    #[test]
    fn previous_contents_are_replaced() {
        let (_root, app) = scratch();
        fs::create_dir_all(app.join("old/deep")).unwrap();
        fs::write(app.join("app.py"), "stale").unwrap();
        fs::write(app.join("old/deep/x"), "stale").unwrap();
        let file = bundle(&[("app.py", b"fresh")]);
        unpack(file, &app, &Limits::default()).unwrap();
        assert_eq!(tree(&app), ["app.py"]);
        assert_eq!(fs::read(app.join("app.py")).unwrap(), b"fresh");
    }

    #[test]
    fn executable_bit_is_kept() {
        use std::os::unix::fs::PermissionsExt;
        let (_root, app) = scratch();
        let mut w = ZipWriter::new(Cursor::new(Vec::new()));
        let run = SimpleFileOptions::default().unix_permissions(0o755);
        w.start_file("run.sh", run).unwrap();
        w.start_file("data.txt", run.unix_permissions(0o666))
            .unwrap();
        unpack(to_file(w), &app, &Limits::default()).unwrap();
        let mode = |name| fs::metadata(app.join(name)).unwrap().permissions().mode();
        assert_ne!(mode("run.sh") & 0o111, 0);
        assert_eq!(mode("data.txt") & 0o111, 0);
    }

    #[test]
    fn traversal_is_refused() {
        for name in ["../evil.py", "a/../../evil.py", ".."] {
            let e = refused(bundle(&[(name, b"x")]), &Limits::default());
            let why = matches!(e, BundleError::UnsafePath { why, .. } if why.contains(".."));
            assert!(why, "{name}: {e}");
        }
    }

    #[test]
    fn absolute_paths_are_refused() {
        for name in ["/tmp/evil.py", "C:/evil.py"] {
            let e = refused(bundle(&[(name, b"x")]), &Limits::default());
            let why = matches!(
                e,
                BundleError::UnsafePath {
                    why: "absolute path",
                    ..
                }
            );
            assert!(why, "{name}: {e}");
        }
    }

    #[test]
    fn other_unsafe_names_are_refused() {
        for name in ["a\\b.py", "..\\evil.py", "a//b", "a/./b", "bad\u{1b}name"] {
            let e = refused(bundle(&[(name, b"x")]), &Limits::default());
            assert!(matches!(e, BundleError::UnsafePath { .. }), "{name}: {e}");
        }
    }

    #[test]
    fn symlinks_are_refused() {
        let mut w = ZipWriter::new(Cursor::new(Vec::new()));
        w.start_file("app.py", SimpleFileOptions::default())
            .unwrap();
        w.add_symlink("link", "/etc/passwd", SimpleFileOptions::default())
            .unwrap();
        let e = refused(to_file(w), &Limits::default());
        assert!(matches!(&e, BundleError::Symlink(p) if p == "link"), "{e}");
    }

    #[test]
    fn special_files_are_refused() {
        // A FIFO: `unix_permissions` keeps only permission bits, so set the raw attributes.
        let mut w = ZipWriter::new(Cursor::new(Vec::new()));
        w.start_file("fifo", SimpleFileOptions::default()).unwrap();
        let mut bytes = w.finish().unwrap().into_inner();
        set_mode(&mut bytes, 0o010_644);
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&bytes).unwrap();
        file.rewind().unwrap();
        let e = refused(file, &Limits::default());
        assert!(matches!(&e, BundleError::Special(p) if p == "fifo"), "{e}");
    }

    /// Sets the unix mode of the only entry of a zip archive, in its central directory.
    fn set_mode(bytes: &mut [u8], mode: u32) {
        let at = bytes.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
        bytes[at + 5] = 3; // made by unix, so the mode counts
        bytes[at + 38..at + 42].copy_from_slice(&(mode << 16).to_le_bytes());
    }

    #[test]
    fn too_many_entries_are_refused() {
        let names: Vec<String> = (0..11).map(|i| format!("f{i}.txt")).collect();
        let entries: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b""[..])).collect();
        let limits = Limits {
            max_entries: 10,
            ..Limits::default()
        };
        let e = refused(bundle(&entries), &limits);
        assert!(matches!(e, BundleError::TooManyEntries(10)), "{e}");
        let (_root, app) = scratch();
        assert_eq!(unpack(bundle(&entries[..10]), &app, &limits).unwrap(), 10);
    }

    #[test]
    fn too_large_is_refused() {
        let limits = Limits {
            max_bytes: 100,
            ..Limits::default()
        };
        let e = refused(bundle(&[("a", &[1; 60]), ("b", &[2; 60])]), &limits);
        assert!(matches!(e, BundleError::TooLarge(100)), "{e}");
    }

    #[test]
    fn refused_bundle_keeps_previous_contents() {
        let (_root, app) = scratch();
        fs::create_dir_all(&app).unwrap();
        fs::write(app.join("app.py"), "previous").unwrap();
        let e = unpack(bundle(&[("../x", b"x")]), &app, &Limits::default());
        assert!(e.is_err());
        assert_eq!(tree(&app), ["app.py"]);
    }

    #[test]
    fn not_a_zip_is_refused() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"not a zip").unwrap();
        file.rewind().unwrap();
        let e = refused(file, &Limits::default());
        assert!(matches!(e, BundleError::NotZip(_)), "{e}");
    }
}
