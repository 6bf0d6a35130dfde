//! The pictures a bundle shows in the store: the icon (a square PNG or JPEG of 400–1000 px
//! under 100 KB, named `static/icon…` or after the app) and the screenshots
//! (`static/screenshot…`, in name order). Only headers are parsed, never whole images.

/// Largest icon, in bytes.
pub const MAX_ICON_BYTES: u64 = 100_000;
/// Largest screenshot, in bytes.
pub const MAX_SCREENSHOT_BYTES: u64 = 5 << 20;
/// Most screenshots kept.
pub const MAX_SCREENSHOTS: usize = 20;

/// Why a picture was refused.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct AssetError {
    /// The bundle path.
    pub path: String,
    /// Why.
    pub reason: String,
}

/// The media type of a picture file name, if it is one the store shows.
pub fn media_type(path: &str) -> Option<&'static str> {
    let lower = path.to_ascii_lowercase();
    if lower.ends_with(".png") {
        Some("image/png")
    } else if lower.ends_with(".jpg") || lower.ends_with(".jpeg") {
        Some("image/jpeg")
    } else {
        None
    }
}

fn file_name(path: &str) -> Option<&str> {
    let name = path.strip_prefix("static/")?;
    (!name.contains('/')).then_some(name)
}

/// The icon's path among `files`: the first picture in `static/` named `icon…` or after
/// the app.
pub fn icon_path<'a>(files: impl IntoIterator<Item = &'a str>, app_name: &str) -> Option<&'a str> {
    let app_name = app_name.to_ascii_lowercase();
    let mut found: Vec<&str> = files
        .into_iter()
        .filter(|p| media_type(p).is_some())
        .filter(|p| {
            file_name(p).is_some_and(|n| {
                let n = n.to_ascii_lowercase();
                n.starts_with("icon") || n.starts_with(&app_name)
            })
        })
        .collect();
    found.sort_unstable();
    found.first().copied()
}

/// The screenshots' paths among `files`, in display order.
pub fn screenshot_paths<'a>(files: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut found: Vec<&str> = files
        .into_iter()
        .filter(|p| media_type(p).is_some())
        .filter(|p| file_name(p).is_some_and(|n| n.to_ascii_lowercase().starts_with("screenshot")))
        .collect();
    found.sort_unstable();
    found
}

/// Width and height of a PNG or JPEG, read from its header.
pub fn dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    if let Some(rest) = bytes.strip_prefix(b"\x89PNG\r\n\x1a\n") {
        let ihdr = rest.get(4..16)?;
        if &ihdr[..4] != b"IHDR" {
            return None;
        }
        let w = u32::from_be_bytes(ihdr[4..8].try_into().ok()?);
        let h = u32::from_be_bytes(ihdr[8..12].try_into().ok()?);
        return Some((w, h));
    }
    let mut at = 2;
    if bytes.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    // Walk the JPEG segments to the first start-of-frame marker.
    loop {
        if *bytes.get(at)? != 0xFF {
            return None;
        }
        let marker = *bytes.get(at + 1)?;
        if marker == 0xFF {
            at += 1;
            continue;
        }
        let len = usize::from(u16::from_be_bytes([
            *bytes.get(at + 2)?,
            *bytes.get(at + 3)?,
        ]));
        let is_frame = (0xC0..=0xCF).contains(&marker) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
        if is_frame {
            let h = u16::from_be_bytes([*bytes.get(at + 5)?, *bytes.get(at + 6)?]);
            let w = u16::from_be_bytes([*bytes.get(at + 7)?, *bytes.get(at + 8)?]);
            return Some((u32::from(w), u32::from(h)));
        }
        if len < 2 {
            return None;
        }
        at += 2 + len;
    }
}

/// Checks an icon against the store's rules.
pub fn check_icon(path: &str, bytes: &[u8]) -> Result<(), AssetError> {
    let fail = |reason: String| AssetError {
        path: path.to_owned(),
        reason,
    };
    if bytes.len() as u64 >= MAX_ICON_BYTES {
        return Err(fail(format!(
            "the icon is {} bytes; it must be under {MAX_ICON_BYTES}",
            bytes.len()
        )));
    }
    let (w, h) =
        dimensions(bytes).ok_or_else(|| fail("the icon is not a PNG or JPEG image".into()))?;
    if w != h || !(400..=1000).contains(&w) {
        return Err(fail(format!(
            "the icon is {w}x{h} px; it must be square, 400 to 1000 px"
        )));
    }
    Ok(())
}

/// Checks a screenshot: a readable PNG or JPEG.
pub fn check_screenshot(path: &str, bytes: &[u8]) -> Result<(), AssetError> {
    match dimensions(bytes) {
        Some((w, h)) if w > 0 && h > 0 => Ok(()),
        _ => Err(AssetError {
            path: path.to_owned(),
            reason: "the screenshot is not a PNG or JPEG image".into(),
        }),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A PNG header of the given size (enough for [`dimensions`]).
    pub(crate) fn png_header(w: u32, h: u32) -> Vec<u8> {
        let mut b = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        b.extend_from_slice(&w.to_be_bytes());
        b.extend_from_slice(&h.to_be_bytes());
        b.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
        b
    }

    #[test]
    fn png_and_jpeg_sizes_are_read_from_headers() {
        assert_eq!(dimensions(&png_header(512, 400)), Some((512, 400)));
        let jpeg = [
            0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x00, 0x00, 0xFF, 0xC0, 0x00, 0x11, 0x08, 0x01,
            0xF4, 0x02, 0x58,
        ];
        assert_eq!(dimensions(&jpeg), Some((600, 500)));
        assert_eq!(dimensions(b"GIF89a"), None);
        assert_eq!(dimensions(&[0xFF, 0xD8, 0xFF, 0xE0, 0x00]), None);
    }

    #[test]
    fn icons_must_be_small_squares() {
        assert!(check_icon("static/icon.png", &png_header(400, 400)).is_ok());
        assert!(check_icon("static/icon.png", &png_header(399, 399)).is_err());
        assert!(check_icon("static/icon.png", &png_header(500, 400)).is_err());
        let mut big = png_header(500, 500);
        big.resize(100_000, 0);
        assert!(check_icon("static/icon.png", &big).is_err());
        assert!(check_icon("static/icon.png", b"not an image").is_err());
    }

    #[test]
    fn icon_and_screenshots_are_found_by_name() {
        let files = [
            "static/screenshot-2.png",
            "static/icon.png",
            "static/screenshot-1.jpg",
            "static/notes.txt",
            "static/sub/icon.png",
            "app.py",
        ];
        assert_eq!(icon_path(files, "x"), Some("static/icon.png"));
        assert_eq!(
            icon_path(["static/myapp.jpeg"], "MyApp"),
            Some("static/myapp.jpeg")
        );
        assert_eq!(
            screenshot_paths(files),
            ["static/screenshot-1.jpg", "static/screenshot-2.png"]
        );
    }
}
