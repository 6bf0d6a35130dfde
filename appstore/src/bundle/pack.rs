//! Builds a `.wave` bundle from an app directory, like the `h2o bundle` CLI.
//!
//! `out` may lie inside `dir`: the file list is taken before anything is written, so neither
//! the new bundle nor its temporary file goes into itself, and older bundles at the root are
//! left out by the `*.wave` rule. A bundle in a subdirectory, though, is packed like any file.

use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use zip::write::{SimpleFileOptions, ZipWriter};
use zip::{CompressionMethod, DateTime};

use super::archive::normalize;

/// Always left out, one gitignore line each; added after `.appignore`'s own lines so that its
/// `!` rules cannot bring them back (the last matching line wins).
const EXCLUDED: &str = ".git/\nvenv/\n.venv/\n__pycache__/\n*.pyc\n.DS_Store\n/*.wave\n/.appignore";

/// Tells apart the temporary files of concurrent packs in one process.
static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// What went into a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed {
    /// The bundle's paths: relative, '/'-separated, sorted.
    pub files: Vec<String>,
    /// Size of the written archive in bytes.
    pub bytes: u64,
}

/// Why a directory could not be packed.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// The directory has no `app.toml` at its root.
    #[error("the app directory has no app.toml")]
    NoManifest,
    /// A file to pack is a symbolic link.
    #[error("`{}` is a symbolic link, which a bundle cannot carry", .0.display())]
    Symlink(PathBuf),
    /// A file to pack is neither a regular file nor a directory.
    #[error("`{}` is not a regular file or directory", .0.display())]
    SpecialFile(PathBuf),
    /// A file name that an imported bundle may not have (not UTF-8, a backslash, ...).
    #[error("`{}` has a name a bundle cannot carry", .0.display())]
    BadName(PathBuf),
    /// `.appignore` cannot be read or has an invalid pattern.
    #[error("bad .appignore: {0}")]
    Appignore(#[from] ignore::Error),
    /// The zip writer failed.
    #[error("cannot write the bundle: {0}")]
    Zip(#[from] zip::result::ZipError),
    /// Reading the directory or writing the bundle failed.
    #[error("cannot pack the app: {0}")]
    Io(#[from] io::Error),
}

/// Writes every file under `dir` (honouring `.appignore` and the default exclusions) into a zip at `out`.
pub fn pack(dir: &Path, out: &Path) -> Result<Packed, PackError> {
    if !dir.join("app.toml").is_file() {
        return Err(PackError::NoManifest);
    }
    let ignore = matcher(dir)?;
    let mut files = Vec::new();
    collect(dir, dir, &ignore, &mut files)?;
    files.sort();

    let name = out.file_name().unwrap_or_default().to_string_lossy();
    let seq = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
    let tmp = out.with_file_name(format!(".{name}.{}-{seq}.tmp", std::process::id()));
    // Renamed into place only once complete, so a failure never leaves a partial bundle.
    let written = write(dir, &files, &tmp).and_then(|bytes| {
        fs::rename(&tmp, out)?;
        Ok(bytes)
    });
    if written.is_err() {
        // Best effort: the error that matters is the one already in hand.
        let _ = fs::remove_file(&tmp);
    }
    Ok(Packed {
        files,
        bytes: written?,
    })
}

/// The `.appignore` rules of `dir` followed by the default exclusions.
fn matcher(dir: &Path) -> Result<Gitignore, PackError> {
    let mut builder = GitignoreBuilder::new(dir);
    let appignore = dir.join(".appignore");
    if appignore.is_file()
        && let Some(e) = builder.add(appignore)
    {
        return Err(e.into());
    }
    for line in EXCLUDED.lines() {
        builder.add_line(None, line)?;
    }
    Ok(builder.build()?)
}

/// Appends the bundle names of the files under `dir` that `ignore` lets through.
fn collect(
    root: &Path,
    dir: &Path,
    ignore: &Gitignore,
    files: &mut Vec<String>,
) -> Result<(), PackError> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let (path, kind) = (entry.path(), entry.file_type()?);
        // An excluded link is fine (virtualenvs are full of them): only packed ones are refused.
        if ignore.matched(&path, path.is_dir()).is_ignore() {
            continue;
        }
        if kind.is_symlink() {
            return Err(PackError::Symlink(path));
        } else if kind.is_dir() {
            collect(root, &path, ignore, files)?;
        } else if kind.is_file() {
            files.push(bundle_name(root, &path)?);
        } else {
            return Err(PackError::SpecialFile(path));
        }
    }
    Ok(())
}

/// The '/'-separated path of `path` relative to `root`, if a bundle can carry it.
fn bundle_name(root: &Path, path: &Path) -> Result<String, PackError> {
    let relative = path.strip_prefix(root).unwrap_or(path);
    let parts: Option<Vec<&str>> = relative.iter().map(|part| part.to_str()).collect();
    let name = parts.map(|parts| parts.join("/")).unwrap_or_default();
    // Held to the rules of `Archive::open`, so that a packed bundle always imports.
    if normalize(&name).is_err() {
        return Err(PackError::BadName(path.to_owned()));
    }
    Ok(name)
}

/// Writes `files` (relative to `dir`) into a new zip at `tmp`; returns its size.
fn write(dir: &Path, files: &[String], tmp: &Path) -> Result<u64, PackError> {
    let mut zip = ZipWriter::new(BufWriter::new(File::create_new(tmp)?));
    // A fixed date and mode, so the same files always give the same bytes.
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .last_modified_time(DateTime::default())
        .unix_permissions(0o644);
    for name in files {
        zip.start_file(name.as_str(), options)?;
        io::copy(&mut File::open(dir.join(name))?, &mut zip)?;
    }
    let file = zip
        .finish()?
        .into_inner()
        .map_err(io::IntoInnerError::into_error)?;
    file.sync_all()?;
    Ok(file.metadata()?.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::archive::{Archive, Limits};

    /// An app directory exercising every exclusion rule.
    fn app() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let files = [
            ("app.toml", "[App]\nName = \"demo\"\n"),
            ("app.py", "print('hi')\n"),
            ("static/icon.png", "\u{89}PNG"),
            ("sub/old.wave", "kept: *.wave is excluded at the root only"),
            ("venv/bin/activate", ""),
            (".venv/lib/x.py", ""),
            ("__pycache__/x.pyc", ""),
            ("sub/__pycache__/y.cpython-312.pyc", ""),
            ("lib.pyc", ""),
            (".git/config", ""),
            (".DS_Store", ""),
            ("data/big.csv", "a,b\n"),
            ("debug.log", ""),
            ("old.wave", ""),
            (".appignore", "data/\n*.log\n!venv/\n"),
        ];
        for (name, text) in files {
            let path = dir.path().join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        dir
    }

    const EXPECTED: [&str; 4] = ["app.py", "app.toml", "static/icon.png", "sub/old.wave"];

    #[test]
    fn packs_exactly_the_expected_files_and_opens() {
        let (dir, out) = (app(), tempfile::tempdir().unwrap());
        #[cfg(unix)]
        std::os::unix::fs::symlink("/usr/bin/python3", dir.path().join("venv/bin/python")).unwrap();
        let bundle = out.path().join("demo.wave");
        let packed = pack(dir.path(), &bundle).unwrap();
        assert_eq!(packed.files, EXPECTED);
        assert_eq!(packed.bytes, fs::metadata(&bundle).unwrap().len());
        let archive = Archive::open(File::open(&bundle).unwrap(), &Limits::default()).unwrap();
        let paths: Vec<_> = archive.files().iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, EXPECTED);
        let left: Vec<_> = fs::read_dir(out.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["demo.wave"], "no temporary file is left behind");
    }

    #[test]
    fn same_dir_gives_identical_bytes() {
        let (dir, out) = (app(), tempfile::tempdir().unwrap());
        let (first, second) = (out.path().join("1.wave"), out.path().join("2.wave"));
        pack(dir.path(), &first).unwrap();
        let app_py = File::options()
            .write(true)
            .open(dir.path().join("app.py"))
            .unwrap();
        app_py
            .set_modified(std::time::SystemTime::UNIX_EPOCH)
            .unwrap();
        pack(dir.path(), &second).unwrap();
        assert_eq!(fs::read(first).unwrap(), fs::read(second).unwrap());
    }

    #[test]
    fn bundle_inside_the_app_dir_leaves_itself_out() {
        let dir = app();
        let bundle = dir.path().join("demo.wave");
        pack(dir.path(), &bundle).unwrap();
        assert_eq!(pack(dir.path(), &bundle).unwrap().files, EXPECTED);
    }

    #[test]
    fn missing_manifest() {
        let dir = app();
        fs::remove_file(dir.path().join("app.toml")).unwrap();
        let out = dir.path().join("demo.wave");
        assert!(matches!(pack(dir.path(), &out), Err(PackError::NoManifest)));
        assert!(!out.exists());
    }

    #[cfg(unix)]
    #[test]
    fn refuses_what_a_bundle_cannot_carry() {
        let dir = app();
        let out = dir.path().join("demo.wave");
        let link = dir.path().join("static/link.png");
        std::os::unix::fs::symlink("icon.png", &link).unwrap();
        assert!(matches!(pack(dir.path(), &out), Err(PackError::Symlink(p)) if p == link));
        fs::remove_file(&link).unwrap();
        let odd = dir.path().join("static\\icon.png");
        fs::write(&odd, "").unwrap();
        assert!(matches!(pack(dir.path(), &out), Err(PackError::BadName(p)) if p == odd));
        assert!(!out.exists());
    }
}
