//! A minimal HTTP/1.1 GET over a plain `TcpStream`, for the load run's
//! many long-lived streams (live tails, searches): one thread per stream
//! and no async runtime, so the load generator costs little CPU next to
//! the `cblogsd` it measures on a small machine, and a line's receive time
//! is taken on the thread that reads it.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

/// An answer whose body is read as it arrives.
pub struct Response {
    pub status: u16,
    headers: Vec<(String, String)>,
    pub body: BufReader<Body>,
    /// A handle on the connection, to shut it down from another thread.
    pub conn: TcpStream,
}

impl Response {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The whole body as text (for small answers).
    pub fn text(mut self) -> io::Result<String> {
        let mut s = String::new();
        self.body.read_to_string(&mut s)?;
        Ok(s)
    }
}

/// `GET path` (with its query) from `base` (`http://host:port`).
pub fn get(base: &str, path: &str, read_timeout: Option<Duration>) -> io::Result<Response> {
    let addr = base
        .strip_prefix("http://")
        .ok_or_else(|| io::Error::other(format!("{base}: only http:// is supported")))?
        .trim_end_matches('/');
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(read_timeout)?;
    let conn = stream.try_clone()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )?;
    let mut r = BufReader::with_capacity(64 << 10, stream);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("not an HTTP status line: {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let has = |name: &str, value: &str| {
        headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case(name) && v.eq_ignore_ascii_case(value))
    };
    let kind = if has("transfer-encoding", "chunked") {
        Kind::Chunked {
            left: 0,
            done: false,
        }
    } else if let Some(n) = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
    {
        Kind::Length(n)
    } else {
        Kind::UntilClose
    };
    Ok(Response {
        status,
        headers,
        body: BufReader::with_capacity(64 << 10, Body { r, kind }),
        conn,
    })
}

/// Ends a connection from another thread: its reader sees the end.
pub fn shut(conn: &TcpStream) {
    let _ = conn.shutdown(Shutdown::Both);
}

/// A response body: chunked, of a known length, or until the connection closes.
pub struct Body {
    r: BufReader<TcpStream>,
    kind: Kind,
}

enum Kind {
    Chunked { left: usize, done: bool },
    Length(u64),
    UntilClose,
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.kind {
            Kind::UntilClose => self.r.read(buf),
            Kind::Length(left) => {
                if *left == 0 {
                    return Ok(0);
                }
                let max = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                let n = self.r.read(&mut buf[..max])?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                *left -= n as u64;
                Ok(n)
            }
            Kind::Chunked { left, done } => {
                if *done {
                    return Ok(0);
                }
                if *left == 0 {
                    let mut line = String::new();
                    if self.r.read_line(&mut line)? == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    let hex = line.trim().split(';').next().unwrap_or("");
                    let size = usize::from_str_radix(hex, 16).map_err(|_| {
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("bad chunk size line {line:?}"),
                        )
                    })?;
                    if size == 0 {
                        // Trailers, then the empty line.
                        loop {
                            line.clear();
                            if self.r.read_line(&mut line)? == 0 || line.trim().is_empty() {
                                break;
                            }
                        }
                        *done = true;
                        return Ok(0);
                    }
                    *left = size;
                }
                let max = buf.len().min(*left);
                let n = self.r.read(&mut buf[..max])?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                *left -= n;
                if *left == 0 {
                    let mut crlf = [0u8; 2];
                    self.r.read_exact(&mut crlf)?;
                }
                Ok(n)
            }
        }
    }
}

/// Percent-encodes a query parameter value.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode("a/b*c d"), "a%2Fb%2Ac%20d");
        assert_eq!(encode(r#""\d+""#), "%22%5Cd%2B%22");
    }
}
