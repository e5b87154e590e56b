//! The ingest decoder: a request body, as bytes off the wire, into a checked
//! [`IngestRequest`] — or an error that names what is wrong with it.
//!
//! It is a pure function of the body, its `Content-Encoding` and the limits,
//! so that it can be fuzzed on its own (`fuzz/fuzz_targets/ingest_decode.rs`):
//! nothing a client sends may make it panic, allocate past the limits, or
//! let through a request that `IngestRequest::validate` refuses.

use std::io::Read;

use cblogs_core::wire::{IngestRequest, WireError};

/// What a body may hold, from `[ingest]` in cblogsd.toml.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Largest body after zstd decompression (`ingest.max_body_bytes`).
    pub max_body_bytes: usize,
    /// Most lines in one request, over all its batches (`ingest.max_lines_per_request`).
    pub max_lines: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("decompressed body is larger than ingest.max_body_bytes ({limit} bytes)")]
    TooLarge { limit: usize },
    #[error("the request holds {lines} lines, more than ingest.max_lines_per_request ({limit}); send smaller batches")]
    TooManyLines { lines: usize, limit: usize },
    #[error("unsupported Content-Encoding '{0}' (use zstd or none)")]
    Encoding(String),
    #[error("body is not valid zstd: {0}")]
    Zstd(std::io::Error),
    #[error("malformed ingest body: {0}")]
    Json(serde_json::Error),
    #[error("invalid ingest body: {0}")]
    Invalid(WireError),
}

/// Decodes and checks one ingest body.
pub fn decode_ingest(
    raw: &[u8],
    encoding: Option<&str>,
    limits: DecodeLimits,
) -> Result<IngestRequest, DecodeError> {
    let json;
    let json: &[u8] = match encoding.map(|e| e.trim().to_ascii_lowercase()).as_deref() {
        None | Some("identity") | Some("") => raw,
        Some("zstd") => {
            json = unzstd(raw, limits.max_body_bytes)?;
            &json
        }
        Some(other) => return Err(DecodeError::Encoding(other.to_owned())),
    };
    if json.len() > limits.max_body_bytes {
        return Err(DecodeError::TooLarge {
            limit: limits.max_body_bytes,
        });
    }
    let req: IngestRequest = serde_json::from_slice(json).map_err(DecodeError::Json)?;
    let lines: usize = req.batches.iter().map(|b| b.lines.len()).sum();
    if lines > limits.max_lines {
        return Err(DecodeError::TooManyLines {
            lines,
            limit: limits.max_lines,
        });
    }
    req.validate().map_err(DecodeError::Invalid)?;
    Ok(req)
}

/// Decompresses at most `limit` bytes: a small body cannot expand into a huge one.
fn unzstd(raw: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    let too_large = || DecodeError::TooLarge { limit };
    // A frame that states its size (shippers' do) is decompressed in one
    // go into a buffer of exactly that size, after checking it is allowed.
    let single_frame = zstd::zstd_safe::find_frame_compressed_size(raw) == Ok(raw.len());
    if let (true, Ok(Some(size))) = (single_frame, zstd::zstd_safe::get_frame_content_size(raw)) {
        if size > limit as u64 {
            return Err(too_large());
        }
        return zstd::bulk::decompress(raw, size as usize).map_err(DecodeError::Zstd);
    }
    let decoder = zstd::stream::read::Decoder::new(raw).map_err(DecodeError::Zstd)?;
    let mut out = Vec::new();
    decoder
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(DecodeError::Zstd)?;
    if out.len() > limit {
        return Err(too_large());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: DecodeLimits = DecodeLimits {
        max_body_bytes: 4096,
        max_lines: 3,
    };

    fn body(lines: usize) -> String {
        use cblogs_core::wire::{Batch, WireLine};
        use cblogs_core::{Source, Stream};
        let source = Source::example("r/prod/n", 0, "p", Stream::Stdout);
        let lines: Vec<WireLine> = (0..lines as u64)
            .map(|i| WireLine {
                offset: i * 3,
                time_ns: 1,
                text: Some(format!("l{i}")),
                b64: None,
                cut: false,
                partial: false,
                continues: false,
            })
            .collect();
        let batch = Batch {
            source,
            start: 0,
            end: lines.len() as u64 * 3,
            lines,
            allow_gap: false,
        };
        serde_json::to_string(&IngestRequest {
            batches: vec![batch],
        })
        .unwrap()
    }

    #[test]
    fn limits_are_named() {
        assert!(decode_ingest(body(3).as_bytes(), None, LIMITS).is_ok());
        let err = decode_ingest(body(4).as_bytes(), None, LIMITS).unwrap_err();
        assert!(
            err.to_string().contains("ingest.max_lines_per_request (3)"),
            "{err}"
        );
        let big = zstd::bulk::compress(" ".repeat(5000).as_bytes(), 3).unwrap();
        let err = decode_ingest(&big, Some("zstd"), LIMITS).unwrap_err();
        assert!(err.to_string().contains("ingest.max_body_bytes"), "{err}");
        let err = decode_ingest(b"{}", Some("gzip"), LIMITS).unwrap_err();
        assert!(err.to_string().contains("'gzip'"), "{err}");
    }
}
