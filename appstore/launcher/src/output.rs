//! The instance log: the launcher's stdout, each line prefixed with where it came from.

use std::fmt;
use std::io::{self, Write};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// Longest line kept whole; the rest of a longer line is dropped.
pub const MAX_LINE: usize = 16 * 1024;

/// Prefix of the launcher's own messages.
const LAUNCHER: &str = "[launcher] ";

/// One line read from a child, without its line ending.
#[derive(Debug, PartialEq, Eq)]
pub struct Line {
    /// The line's first [`MAX_LINE`] bytes.
    pub bytes: Vec<u8>,
    /// Whether the line was longer than [`MAX_LINE`] bytes.
    pub truncated: bool,
}

/// Reads lines of at most [`MAX_LINE`] bytes from a child's output.
pub struct Lines<R> {
    reader: BufReader<R>,
}

impl<R: AsyncRead + Unpin> Lines<R> {
    /// Reads from `reader`.
    pub fn new(reader: R) -> Self {
        Lines {
            reader: BufReader::new(reader),
        }
    }

    /// The next line, or `None` once the output has ended.
    pub async fn next_line(&mut self) -> io::Result<Option<Line>> {
        let mut line = Line {
            bytes: Vec::new(),
            truncated: false,
        };
        let mut started = false;
        loop {
            let buf = self.reader.fill_buf().await?;
            if buf.is_empty() {
                return Ok(started.then_some(line));
            }
            started = true;
            let (chunk, used, ended) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (&buf[..i], i + 1, true),
                None => (buf, buf.len(), false),
            };
            let room = MAX_LINE - line.bytes.len();
            line.bytes
                .extend_from_slice(&chunk[..chunk.len().min(room)]);
            line.truncated |= chunk.len() > room;
            self.reader.consume(used);
            if ended {
                break;
            }
        }
        if line.bytes.last() == Some(&b'\r') && !line.truncated {
            line.bytes.pop();
        }
        Ok(Some(line))
    }
}

/// The log record of `line`: the prefix, the line as lossy UTF-8, and a newline.
pub fn format(prefix: &str, line: &Line) -> Vec<u8> {
    let text = String::from_utf8_lossy(&line.bytes);
    let mark = if line.truncated { " [truncated]" } else { "" };
    format!("{prefix}{text}{mark}\n").into_bytes()
}

/// Copies a child's output to the log, line by line, until it ends.
pub async fn pipe(prefix: &'static str, reader: impl AsyncRead + Unpin) {
    let mut lines = Lines::new(reader);
    loop {
        match lines.next_line().await {
            Ok(Some(line)) => emit(&format(prefix, &line)),
            Ok(None) => break,
            Err(e) => {
                say(format_args!(
                    "cannot read the output of {}: {e}",
                    prefix.trim()
                ));
                break;
            }
        }
    }
}

/// Writes one message of the launcher itself to the log.
pub fn say(message: impl fmt::Display) {
    emit(format!("{LAUNCHER}{message}\n").as_bytes());
}

/// Writes whole records to stdout, one at a time so lines of different sources never mix.
fn emit(record: &[u8]) {
    let mut out = io::stdout().lock();
    // With stdout gone there is nowhere left to report the failure.
    let _ = out.write_all(record).and_then(|()| out.flush());
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines_of(input: &[u8]) -> Vec<Line> {
        let mut lines = Lines::new(input);
        let mut out = Vec::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            out.push(line);
        }
        out
    }

    fn line(bytes: &[u8]) -> Line {
        let (bytes, truncated) = (bytes.to_vec(), false);
        Line { bytes, truncated }
    }

    #[tokio::test]
    async fn splits_lines() {
        let got = lines_of(b"one\ntwo\r\n\nlast").await;
        let want = [line(b"one"), line(b"two"), line(b""), line(b"last")];
        assert_eq!(got, want);
        assert!(lines_of(b"").await.is_empty());
    }

    #[tokio::test]
    async fn caps_long_lines() {
        let mut input = vec![b'x'; MAX_LINE + 10];
        input.extend(b"\nnext\n");
        let got = lines_of(&input).await;
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].bytes.len(), MAX_LINE);
        assert!(got[0].truncated);
        assert_eq!(got[1], line(b"next"));
    }

    #[test]
    fn prefixes_lines() {
        assert_eq!(format("[app] ", &line(b"hello")), b"[app] hello\n");
        let bad = line(b"caf\xc3\xa9 \xff");
        assert_eq!(
            format("[waved] ", &bad),
            "[waved] café \u{fffd}\n".as_bytes()
        );
        let long = Line {
            bytes: b"abc".to_vec(),
            truncated: true,
        };
        assert_eq!(format("[app] ", &long), b"[app] abc [truncated]\n");
    }
}
