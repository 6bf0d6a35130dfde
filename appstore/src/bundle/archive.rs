//! Safe inspection of an uploaded `.wave` bundle: a zip archive from an untrusted user.
//!
//! [`Archive::open`] checks every name, type, size and offset in the central directory, then
//! decompresses every entry into a small fixed buffer before anything else trusts the archive.
//!
//! What this relies on in the `zip` crate (9.x), all exercised by the tests below:
//! - its reader bounds the compressed input of an entry by the declared compressed size;
//! - its reader fails with an `InvalidData` error as soon as an entry inflates past its
//!   declared uncompressed size, and checks the CRC-32 once the entry reaches its end, so
//!   reading every entry to its end also proves the deflate stream stops exactly there;
//! - those errors carry only a message, so they surface as [`ArchiveError::Corrupt`]; an entry
//!   that ends early is reported by our own count as [`ArchiveError::SizeMismatch`], and our
//!   count also stops an entry that outgrows its declared size should the crate stop doing so.
//!
//! The central directory is parsed into memory by the crate before the entry count is known,
//! so that memory grows with the upload's size: the caller must bound the upload itself.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};

use zip::result::ZipError;
use zip::{CompressionMethod, ZipArchive, ZipReadOptions};

// The file-type bits of a unix mode (kept in the high half of the external attributes).
const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFLNK: u32 = 0o120_000;
/// Entries smaller than this are exempt from the ratio check: tiny repetitive files compress
/// far better than 200:1 and cannot hurt anyone.
const RATIO_EXEMPT: u64 = 64 * 1024;
/// The only buffer decompression ever fills.
const CHUNK: usize = 16 * 1024;

/// Limits an archive must respect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Most entries allowed, directories included.
    pub max_files: usize,
    /// Most bytes all entries may unpack to, together.
    pub max_unpacked_bytes: u64,
    /// Highest uncompressed/compressed ratio allowed for an entry of 64 KiB or more.
    pub max_ratio: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_files: 10_000,
            max_unpacked_bytes: 1 << 30,
            max_ratio: 200,
        }
    }
}

/// One regular file in the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Normalized, '/'-separated path relative to the bundle root.
    pub path: String,
    /// Uncompressed size in bytes, as checked by decompressing it.
    pub size: u64,
}

/// A checked archive.
#[derive(Debug)]
pub struct Archive {
    zip: ZipArchive<BufReader<File>>,
    files: Vec<Entry>,
    /// Index in `zip` of each entry of `files`.
    indices: Vec<usize>,
}

/// Why an archive was refused.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The file is not a zip archive, or its central directory cannot be read.
    #[error("the bundle is not a readable zip archive: {reason}")]
    NotZip { reason: String },
    /// The archive has more entries than allowed.
    #[error("the bundle has more than {limit} entries")]
    TooManyFiles { limit: usize },
    /// An entry name is absolute.
    #[error("bundle entry `{path}` has an absolute path")]
    AbsolutePath { path: String },
    /// An entry name has a `..` segment.
    #[error("bundle entry `{path}` leaves the bundle directory")]
    PathTraversal { path: String },
    /// An entry name has control characters, backslashes or empty or `.` segments.
    #[error("bundle entry `{}` has an unsafe name", .path.escape_debug())]
    UnsafePath { path: String },
    /// An entry is a symbolic link.
    #[error("bundle entry `{path}` is a symbolic link")]
    Symlink { path: String },
    /// An entry is neither a regular file nor a directory.
    #[error("bundle entry `{path}` is not a regular file or directory")]
    SpecialFile { path: String },
    /// Two entries share a name, or a file name is also used as a directory.
    #[error("bundle entry `{path}` appears more than once")]
    Duplicate { path: String },
    /// An entry is encrypted.
    #[error("bundle entry `{path}` is encrypted")]
    Encrypted { path: String },
    /// An entry uses a compression method other than stored or deflate.
    #[error("bundle entry `{path}` uses unsupported compression {method}")]
    UnsupportedCompression { path: String, method: String },
    /// The archive (or, from [`Archive::read`], one file) unpacks to more than allowed.
    #[error("{} more than {limit} bytes", subject(.path))]
    TooLarge { path: Option<String>, limit: u64 },
    /// An entry compresses suspiciously well, or shares its bytes with another entry.
    #[error("bundle entry `{path}` looks like a zip bomb ({})", bomb_reason(.ratio))]
    Bomb { path: String, ratio: Option<u64> },
    /// An entry does not unpack to its declared size.
    #[error("bundle entry `{path}` declares {declared} bytes but unpacks to {actual}")]
    SizeMismatch {
        path: String,
        declared: u64,
        actual: u64,
    },
    /// An entry's data or local header is damaged (bad CRC, bad deflate stream, ...).
    #[error("bundle entry `{path}` is corrupt: {reason}")]
    Corrupt { path: String, reason: String },
    /// [`Archive::read`] was asked for a file the archive does not have.
    #[error("the bundle has no file `{path}`")]
    NotFound { path: String },
    /// Reading the spooled file failed.
    #[error("cannot read the bundle: {0}")]
    Io(#[from] io::Error),
}

impl ArchiveError {
    /// A stable kebab-case code for this kind of error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotZip { .. } => "not-zip",
            Self::TooManyFiles { .. } => "too-many-files",
            Self::AbsolutePath { .. } => "absolute-path",
            Self::PathTraversal { .. } => "path-traversal",
            Self::UnsafePath { .. } => "unsafe-path",
            Self::Symlink { .. } => "symlink",
            Self::SpecialFile { .. } => "special-file",
            Self::Duplicate { .. } => "duplicate-entry",
            Self::Encrypted { .. } => "encrypted",
            Self::UnsupportedCompression { .. } => "unsupported-compression",
            Self::TooLarge { .. } => "too-large",
            Self::Bomb { .. } => "zip-bomb",
            Self::SizeMismatch { .. } => "size-mismatch",
            Self::Corrupt { .. } => "corrupt",
            Self::NotFound { .. } => "not-found",
            Self::Io(_) => "io",
        }
    }

    /// The offending entry's path, where there is one.
    pub fn path(&self) -> Option<&str> {
        match self {
            Self::AbsolutePath { path }
            | Self::PathTraversal { path }
            | Self::UnsafePath { path }
            | Self::Symlink { path }
            | Self::SpecialFile { path }
            | Self::Duplicate { path }
            | Self::Encrypted { path }
            | Self::UnsupportedCompression { path, .. }
            | Self::Bomb { path, .. }
            | Self::SizeMismatch { path, .. }
            | Self::Corrupt { path, .. }
            | Self::NotFound { path } => Some(path),
            Self::TooLarge { path, .. } => path.as_deref(),
            Self::NotZip { .. } | Self::TooManyFiles { .. } | Self::Io(_) => None,
        }
    }
}

impl Archive {
    /// Opens and fully checks an archive.
    pub fn open(file: File, limits: &Limits) -> Result<Archive, ArchiveError> {
        let mut zip = ZipArchive::new(BufReader::new(file)).map_err(|e| match e {
            ZipError::Io(e) if e.kind() != io::ErrorKind::UnexpectedEof => ArchiveError::Io(e),
            e => ArchiveError::NotZip {
                reason: e.to_string(),
            },
        })?;
        if zip.len() > limits.max_files {
            return Err(ArchiveError::TooManyFiles {
                limit: limits.max_files,
            });
        }
        let mut paths = Vec::with_capacity(zip.len());
        // (local header offset, end of data, entry index) to find overlapping entries.
        let mut spans = Vec::with_capacity(zip.len());
        let mut declared_total = 0u64;
        for i in 0..zip.len() {
            let name = zip
                .name_for_index(i)
                .and_then(Result::ok)
                .unwrap_or_default();
            let (path, is_dir) = normalize(&name)?;
            let f = zip.by_index_raw(i).map_err(|e| zip_error(&path, e))?;
            match f.unix_mode().map(|mode| mode & S_IFMT) {
                None | Some(0 | S_IFREG | S_IFDIR) => {}
                Some(S_IFLNK) => return Err(ArchiveError::Symlink { path }),
                Some(_) => return Err(ArchiveError::SpecialFile { path }),
            }
            if f.encrypted() {
                return Err(ArchiveError::Encrypted { path });
            }
            let method = f.compression();
            if !matches!(
                method,
                CompressionMethod::Stored | CompressionMethod::Deflated
            ) {
                let method = format!("{method:?}");
                return Err(ArchiveError::UnsupportedCompression { path, method });
            }
            let (size, packed) = (f.size(), f.compressed_size());
            if size >= RATIO_EXEMPT && size / packed.max(1) > limits.max_ratio {
                let ratio = Some(size / packed.max(1));
                return Err(ArchiveError::Bomb { path, ratio });
            }
            declared_total = declared_total.saturating_add(size);
            // `by_index_raw` has read the local header, so `data_start` is known.
            let data_end = f.data_start().unwrap_or(u64::MAX).saturating_add(packed);
            spans.push((f.header_start(), data_end, i));
            paths.push((path, is_dir));
        }
        if zip.has_duplicate_names() {
            let start = zip.central_directory_start();
            let path = raw_duplicate(&mut zip.into_inner(), start)?.unwrap_or_default();
            return Err(ArchiveError::Duplicate { path });
        }
        check_names(&paths)?;
        if declared_total > limits.max_unpacked_bytes {
            return Err(too_large(None, limits.max_unpacked_bytes));
        }
        // Each entry's data must end before the next local header (or the central directory)
        // starts; several entries sharing bytes is the "overlapping files" zip bomb.
        spans.sort_unstable();
        let next_starts = spans.iter().skip(1).map(|s| s.0);
        let next_starts = next_starts.chain([zip.central_directory_start()]);
        let overlap = spans.iter().zip(next_starts).find(|(s, next)| s.1 > *next);
        if let Some(((_, _, i), _)) = overlap {
            let path = paths[*i].0.clone();
            return Err(ArchiveError::Bomb { path, ratio: None });
        }

        let (files, indices) = unpack_all(&mut zip, paths, limits)?;
        Ok(Archive {
            zip,
            files,
            indices,
        })
    }

    /// The regular files, in archive order.
    pub fn files(&self) -> &[Entry] {
        &self.files
    }

    /// Reads one file wholly into memory, refusing more than `max` bytes.
    pub fn read(&mut self, path: &str, max: u64) -> Result<Vec<u8>, ArchiveError> {
        let Some(pos) = self.files.iter().position(|e| e.path == path) else {
            let path = path.to_owned();
            return Err(ArchiveError::NotFound { path });
        };
        let (path, size) = (&self.files[pos].path, self.files[pos].size);
        if size > max {
            return Err(too_large(Some(path), max));
        }
        let f = self
            .zip
            .by_index_with_options(self.indices[pos], consistent())
            .map_err(|e| zip_error(path, e))?;
        let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        // One byte more than declared, so a file changed since `open` is noticed, not trusted.
        f.take(size.saturating_add(1))
            .read_to_end(&mut data)
            .map_err(|e| read_error(path, e))?;
        if data.len() as u64 != size {
            return Err(mismatch(path, size, data.len() as u64));
        }
        Ok(data)
    }
}

/// Decompresses every entry into one small buffer, counting what each really holds; returns
/// the regular files and their indices in `zip`.
fn unpack_all(
    zip: &mut ZipArchive<BufReader<File>>,
    paths: Vec<(String, bool)>,
    limits: &Limits,
) -> Result<(Vec<Entry>, Vec<usize>), ArchiveError> {
    let mut buf = [0u8; CHUNK];
    let mut total = 0u64;
    let (mut files, mut indices) = (Vec::new(), Vec::new());
    for (i, (path, is_dir)) in paths.into_iter().enumerate() {
        let mut f = zip
            .by_index_with_options(i, consistent())
            .map_err(|e| zip_error(&path, e))?;
        let declared = f.size();
        let mut actual = 0u64;
        loop {
            let n = match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_error(&path, e)),
            };
            actual += n;
            total += n;
            // Unreachable while the crate enforces declared sizes: kept so a crate change
            // cannot quietly turn into unbounded decompression.
            if actual > declared {
                return Err(mismatch(&path, declared, actual));
            }
            if total > limits.max_unpacked_bytes {
                return Err(too_large(None, limits.max_unpacked_bytes));
            }
        }
        if actual != declared {
            return Err(mismatch(&path, declared, actual));
        }
        if !is_dir {
            files.push(Entry { path, size: actual });
            indices.push(i);
        }
    }
    Ok((files, indices))
}

/// Read options that also refuse a local header disagreeing with the central directory, since
/// other unzip tools trust the local header and would see a different file.
fn consistent() -> ZipReadOptions<'static> {
    ZipReadOptions::new().enforce_header_consistency(true)
}

/// Checks an entry name; returns its normalized path and whether it names a directory.
pub(crate) fn normalize(name: &str) -> Result<(String, bool), ArchiveError> {
    let path = name.to_owned();
    if name.chars().any(char::is_control) {
        return Err(ArchiveError::UnsafePath { path });
    }
    let drive = matches!(name.as_bytes(), [d, b':', ..] if d.is_ascii_alphabetic());
    if drive || name.starts_with(['/', '\\']) {
        return Err(ArchiveError::AbsolutePath { path });
    }
    if name.split(['/', '\\']).any(|s| s == "..") {
        return Err(ArchiveError::PathTraversal { path });
    }
    let rel = name.strip_prefix("./").unwrap_or(name);
    let (rel, is_dir) = rel.strip_suffix('/').map_or((rel, false), |d| (d, true));
    if rel.contains('\\') || rel.split('/').any(|s| s.is_empty() || s == ".") {
        return Err(ArchiveError::UnsafePath { path });
    }
    Ok((rel.to_owned(), is_dir))
}

/// Refuses two entries with one normalized name, and a file whose name is also a directory.
fn check_names(paths: &[(String, bool)]) -> Result<(), ArchiveError> {
    let mut seen = HashSet::new();
    // Every directory, whether listed or only implied by a deeper entry.
    let mut dirs = HashSet::new();
    for (path, is_dir) in paths {
        if !seen.insert(path.as_str()) {
            let path = path.clone();
            return Err(ArchiveError::Duplicate { path });
        }
        if *is_dir {
            dirs.insert(path.as_str());
        }
        dirs.extend(path.match_indices('/').map(|(i, _)| &path[..i]));
    }
    match paths
        .iter()
        .find(|(path, is_dir)| !is_dir && dirs.contains(path.as_str()))
    {
        Some((path, _)) => Err(ArchiveError::Duplicate { path: path.clone() }),
        None => Ok(()),
    }
}

/// Names the first entry the central directory lists twice: the zip crate keeps only one of
/// them, so the name must be read from the directory itself.
fn raw_duplicate(r: &mut (impl Read + Seek), start: u64) -> io::Result<Option<String>> {
    r.seek(SeekFrom::Start(start))?;
    let mut seen = HashSet::new();
    let mut head = [0u8; 46];
    while r.read_exact(&mut head).is_ok() && head.starts_with(b"PK\x01\x02") {
        let len = |at: usize| u16::from_le_bytes([head[at], head[at + 1]]);
        let mut name = vec![0; usize::from(len(28))];
        r.read_exact(&mut name)?;
        r.seek(SeekFrom::Current(i64::from(len(30)) + i64::from(len(32))))?;
        if seen.contains(&name) {
            return Ok(Some(String::from_utf8_lossy(&name).into_owned()));
        }
        seen.insert(name);
    }
    Ok(None)
}

/// The start of the [`ArchiveError::TooLarge`] message.
fn subject(path: &Option<String>) -> String {
    match path {
        Some(path) => format!("bundle entry `{path}` is"),
        None => "the bundle unpacks to".to_owned(),
    }
}

/// The end of the [`ArchiveError::Bomb`] message.
fn bomb_reason(ratio: &Option<u64>) -> String {
    match ratio {
        Some(ratio) => format!("compression ratio {ratio}:1"),
        None => "its data overlaps another entry".to_owned(),
    }
}

/// The error for more than `limit` bytes, for one entry or (without a path) the archive.
fn too_large(path: Option<&String>, limit: u64) -> ArchiveError {
    let path = path.cloned();
    ArchiveError::TooLarge { path, limit }
}

/// The error for an entry whose data does not match its declared size.
fn mismatch(path: &str, declared: u64, actual: u64) -> ArchiveError {
    let path = path.to_owned();
    ArchiveError::SizeMismatch {
        path,
        declared,
        actual,
    }
}

/// Maps an error of the zip crate about one entry.
fn zip_error(path: &str, e: ZipError) -> ArchiveError {
    match e {
        ZipError::Io(e) => read_error(path, e),
        e => ArchiveError::Corrupt {
            path: path.to_owned(),
            reason: e.to_string(),
        },
    }
}

/// Maps an error met while reading an entry: bad data is corruption, anything else is I/O.
fn read_error(path: &str, e: io::Error) -> ArchiveError {
    use io::ErrorKind::{InvalidData, InvalidInput, UnexpectedEof};
    match e.kind() {
        InvalidData | InvalidInput | UnexpectedEof => ArchiveError::Corrupt {
            path: path.to_owned(),
            reason: e.to_string(),
        },
        _ => ArchiveError::Io(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Cursor, Write};
    use zip::write::{SimpleFileOptions, ZipWriter};

    /// An entry written byte by byte, for archives the zip writer refuses to produce.
    #[derive(Clone, Copy, Default)]
    struct Raw<'a> {
        name: &'a str,
        data: &'a [u8],
        method: u16,
        flags: u16,
        crc: u32,
        /// Declared uncompressed size.
        size: u32,
        mode: u32,
        /// Offset of an existing local header to point at instead of writing one.
        at: Option<u32>,
    }

    impl Raw<'_> {
        fn with(mut self, change: impl FnOnce(&mut Self)) -> Self {
            change(&mut self);
            self
        }
    }

    /// An honest stored regular file.
    fn raw<'a>(name: &'a str, data: &'a [u8]) -> Raw<'a> {
        let (crc, size, mode) = (crc32(data), data.len() as u32, 0o100_644);
        Raw {
            name,
            data,
            crc,
            size,
            mode,
            ..Raw::default()
        }
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
            }
        }
        !crc
    }

    fn put16(out: &mut Vec<u8>, values: &[u16]) {
        values.iter().for_each(|v| out.extend(v.to_le_bytes()));
    }

    /// Writes a local header, or a central one when given the local header's offset.
    fn header(out: &mut Vec<u8>, e: &Raw, central: Option<u32>) {
        if central.is_some() {
            out.extend(b"PK\x01\x02");
            put16(out, &[0x0314]); // made by unix, so the mode counts
        } else {
            out.extend(b"PK\x03\x04");
        }
        put16(out, &[20, e.flags, e.method, 0, 0x21]);
        for v in [e.crc, e.data.len() as u32, e.size] {
            out.extend(v.to_le_bytes());
        }
        put16(out, &[e.name.len() as u16, 0]);
        if let Some(offset) = central {
            put16(out, &[0, 0, 0]);
            out.extend((e.mode << 16).to_le_bytes());
            out.extend(offset.to_le_bytes());
        }
        out.extend(e.name.as_bytes());
    }

    fn craft(entries: &[Raw]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut offsets = Vec::new();
        for e in entries {
            offsets.push(e.at.unwrap_or(out.len() as u32));
            if e.at.is_none() {
                header(&mut out, e, None);
                out.extend(e.data);
            }
        }
        let cd = out.len() as u32;
        for (e, offset) in entries.iter().zip(offsets) {
            header(&mut out, e, Some(offset));
        }
        let n = entries.len() as u16;
        out.extend(b"PK\x05\x06\0\0\0\0");
        put16(&mut out, &[n, n]);
        out.extend((out.len() as u32 - cd).to_le_bytes());
        out.extend(cd.to_le_bytes());
        put16(&mut out, &[0]);
        out
    }

    /// A well-formed archive from the zip writer; names ending in `/` are directories.
    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
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
        w.finish().unwrap().into_inner()
    }

    fn open_with(bytes: &[u8], limits: &Limits) -> Result<Archive, ArchiveError> {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(bytes).unwrap();
        Archive::open(file, limits)
    }

    /// Asserts that opening `bytes` with default limits fails with `code` about `path`.
    fn rejects(bytes: &[u8], code: &str, path: Option<&str>) {
        let e = open_with(bytes, &Limits::default()).unwrap_err();
        assert_eq!((e.code(), e.path()), (code, path), "{e}");
    }

    /// Asserts that an archive with one entry named `name` fails with `code`.
    fn rejects_name(name: &str, code: &str) {
        rejects(&craft(&[raw(name, b"x")]), code, Some(name));
    }

    /// A small app: two files (108 bytes) and a directory.
    fn three_entries() -> Vec<u8> {
        zip_of(&[
            ("app.py", b"print(1)"),
            ("static/", b""),
            ("static/icon.png", &[7; 100]),
        ])
    }

    #[test]
    fn normal_archive_lists_files_and_reads_them() {
        let mut archive = open_with(&three_entries(), &Limits::default()).unwrap();
        let files: Vec<_> = archive.files().iter().map(|e| (&*e.path, e.size)).collect();
        assert_eq!(files, [("app.py", 8), ("static/icon.png", 100)]);
        assert_eq!(archive.read("app.py", 8).unwrap(), b"print(1)");
        assert_eq!(archive.read("static/icon.png", 1000).unwrap(), [7; 100]);
        let e = archive.read("static/icon.png", 99).unwrap_err();
        assert_eq!((e.code(), e.path()), ("too-large", Some("static/icon.png")));
        let e = archive.read("nope", 99).unwrap_err();
        assert_eq!((e.code(), e.path()), ("not-found", Some("nope")));
    }

    #[test]
    fn leading_dot_slash_is_stripped() {
        let archive = open_with(&craft(&[raw("./app.toml", b"x")]), &Limits::default());
        assert_eq!(archive.unwrap().files()[0].path, "app.toml");
    }

    #[test]
    fn not_zip() {
        rejects(b"definitely not a zip archive", "not-zip", None);
        rejects(b"", "not-zip", None);
    }

    #[test]
    fn too_many_files() {
        let limits = Limits {
            max_files: 2,
            ..Limits::default()
        };
        let e = open_with(&three_entries(), &limits).unwrap_err();
        assert!(matches!(e, ArchiveError::TooManyFiles { limit: 2 }), "{e}");
    }

    #[test]
    fn too_large() {
        let limits = Limits {
            max_unpacked_bytes: 100,
            ..Limits::default()
        };
        let e = open_with(&three_entries(), &limits).unwrap_err();
        assert_eq!((e.code(), e.path()), ("too-large", None));
    }

    #[test]
    fn absolute_path() {
        for name in ["/x", "\\x", "C:\\x", "C:/x", "c:x"] {
            rejects_name(name, "absolute-path");
        }
    }

    #[test]
    fn path_traversal() {
        for name in ["../evil", "a/../../b", "a\\..\\b", ".."] {
            rejects_name(name, "path-traversal");
        }
    }

    #[test]
    fn unsafe_path() {
        for name in [
            "a\\b",
            "a\0b",
            "\u{1b}[31m",
            "a//b",
            "a/./b",
            "",
            "./",
            "a/b//",
        ] {
            rejects_name(name, "unsafe-path");
        }
    }

    #[test]
    fn symlink() {
        let link = raw("link", b"/etc/passwd").with(|r| r.mode = 0o120_777);
        rejects(&craft(&[link]), "symlink", Some("link"));
    }

    #[test]
    fn special_file() {
        for mode in [0o010_644, 0o140_644, 0o060_644, 0o020_644] {
            let special = raw("f", b"").with(|r| r.mode = mode);
            rejects(&craft(&[special]), "special-file", Some("f"));
        }
    }

    #[test]
    fn duplicates() {
        let cases = [
            (["a.txt", "a.txt"], "a.txt"),
            (["./a.txt", "a.txt"], "a.txt"),
            (["a", "a/b"], "a"),
            (["a/b/c", "a/b"], "a/b"),
            (["a/", "a"], "a"),
        ];
        for ([first, second], path) in cases {
            let bytes = craft(&[raw(first, b""), raw(second, b"")]);
            rejects(&bytes, "duplicate-entry", Some(path));
        }
    }

    #[test]
    fn encrypted() {
        let secret = raw("secret", b"0123456789ab").with(|r| r.flags = 1);
        rejects(&craft(&[secret]), "encrypted", Some("secret"));
    }

    #[test]
    fn unsupported_compression() {
        let bzip2 = raw("b", b"BZh9").with(|r| r.method = 12);
        rejects(&craft(&[bzip2]), "unsupported-compression", Some("b"));
    }

    #[test]
    fn size_mismatch() {
        let short = raw("a", b"hello").with(|r| r.size = 6);
        let e = open_with(&craft(&[short]), &Limits::default()).unwrap_err();
        let expected = ArchiveError::SizeMismatch {
            path: "a".into(),
            declared: 6,
            actual: 5,
        };
        assert_eq!(e.to_string(), expected.to_string());
    }

    #[test]
    fn corrupt_data() {
        let bad_crc = raw("a", b"hello").with(|r| r.crc = 1);
        rejects(&craft(&[bad_crc]), "corrupt", Some("a"));
        let bad_deflate = raw("d", &[0xff; 16]).with(|r| r.method = 8);
        rejects(&craft(&[bad_deflate]), "corrupt", Some("d"));
        let mut cloaked = craft(&[raw("a.txt", b"hi")]);
        cloaked[30] = b'b'; // the local header's name, after its 30 fixed bytes
        rejects(&cloaked, "corrupt", Some("a.txt"));
    }

    #[test]
    fn overlapping_entries() {
        let shared = raw("b", b"hello").with(|r| r.at = Some(0));
        rejects(&craft(&[raw("a", b"hello"), shared]), "zip-bomb", Some("a"));
        // The data of `a` holds the whole of `b`, local header included.
        let inner = raw("b", b"hello");
        let mut nested = Vec::new();
        header(&mut nested, &inner, None);
        nested.extend(inner.data);
        let inner = inner.with(|r| r.at = Some(31));
        rejects(&craft(&[raw("a", &nested), inner]), "zip-bomb", Some("a"));
    }

    #[test]
    fn zeros_bomb() {
        const SIZE: u64 = 50 << 20;
        let mut w = ZipWriter::new(Cursor::new(Vec::new()));
        w.start_file("zeros", SimpleFileOptions::default()).unwrap();
        let chunk = vec![0; 1 << 20];
        for _ in 0..SIZE >> 20 {
            w.write_all(&chunk).unwrap();
        }
        let bytes = w.finish().unwrap().into_inner();
        let e = open_with(&bytes, &Limits::default()).unwrap_err();
        let bomb = matches!(&e, ArchiveError::Bomb { ratio: Some(r), .. } if *r > 200);
        assert!(bomb, "{e}");

        // The same stream declared as 1000 bytes: the crate stops it one buffer past that.
        let mut zip = ZipArchive::new(Cursor::new(&bytes)).unwrap();
        let mut f = zip.by_index_raw(0).unwrap();
        assert_eq!(f.size(), SIZE);
        let (mut deflated, crc) = (Vec::new(), f.crc32());
        f.read_to_end(&mut deflated).unwrap();
        let small = raw("zeros", &deflated).with(|r| (r.method, r.crc, r.size) = (8, crc, 1000));
        let e = open_with(&craft(&[small]), &Limits::default()).unwrap_err();
        assert!(["corrupt", "size-mismatch"].contains(&e.code()), "{e}");
        assert_eq!(e.path(), Some("zeros"));
    }
}
