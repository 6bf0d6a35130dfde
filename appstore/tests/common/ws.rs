//! A minimal WebSocket client (RFC 6455) for talking to Wave through the App Store's router:
//! the upgrade handshake with arbitrary headers, masked text frames out, text frames in.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An open WebSocket connection.
pub struct Ws {
    stream: TcpStream,
    buffered: Vec<u8>,
}

impl Ws {
    /// Connects to `addr`, asking for `path` with `headers` (Host among them); returns the
    /// status line and headers of a refused upgrade as the error.
    pub async fn connect(addr: &str, path: &str, headers: &[(&str, &str)]) -> Result<Ws, String> {
        let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        );
        for (k, v) in headers {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        request.push_str("\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            let n = stream.read(&mut byte).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err(format!(
                    "closed during the handshake: {}",
                    String::from_utf8_lossy(&head)
                ));
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        if !head.starts_with("HTTP/1.1 101") {
            return Err(head);
        }
        Ok(Ws {
            stream,
            buffered: Vec::new(),
        })
    }

    /// Sends a text frame.
    pub async fn send(&mut self, text: &str) {
        let data = text.as_bytes();
        let mut frame = vec![0x81u8];
        match data.len() {
            n if n < 126 => frame.push(0x80 | u8::try_from(n).unwrap()),
            n if n < 65536 => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&u16::try_from(n).unwrap().to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask = [0x12u8, 0x34, 0x56, 0x78];
        frame.extend_from_slice(&mask);
        frame.extend(data.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame).await.expect("send a frame");
    }

    async fn fill(&mut self, n: usize) -> bool {
        while self.buffered.len() < n {
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(k) => self.buffered.extend_from_slice(&chunk[..k]),
            }
        }
        true
    }

    /// The next text frame (`None` when closed).
    pub async fn recv(&mut self) -> Option<String> {
        loop {
            if !self.fill(2).await {
                return None;
            }
            let opcode = self.buffered[0] & 0x0f;
            let (len, header) = match self.buffered[1] & 0x7f {
                126 => {
                    if !self.fill(4).await {
                        return None;
                    }
                    (
                        usize::from(u16::from_be_bytes([self.buffered[2], self.buffered[3]])),
                        4,
                    )
                }
                127 => {
                    if !self.fill(10).await {
                        return None;
                    }
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&self.buffered[2..10]);
                    (usize::try_from(u64::from_be_bytes(b)).unwrap(), 10)
                }
                n => (usize::from(n), 2),
            };
            if !self.fill(header + len).await {
                return None;
            }
            let payload: Vec<u8> = self.buffered.drain(..header + len).skip(header).collect();
            match opcode {
                0x1 => return Some(String::from_utf8_lossy(&payload).into_owned()),
                0x8 => return None,
                _ => {}
            }
        }
    }

    /// Reads frames until one contains `needle`, for at most `timeout`; all frames seen.
    pub async fn until(&mut self, needle: &str, timeout: Duration) -> Result<String, Vec<String>> {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.recv()).await {
                Ok(Some(frame)) if frame.contains(needle) => return Ok(frame),
                Ok(Some(frame)) => seen.push(frame),
                Ok(None) | Err(_) => return Err(seen),
            }
        }
    }
}
