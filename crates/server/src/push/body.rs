//! A pushed body's `Content-Encoding`, undone within the body limit.

use std::io::Read;

use super::PushError;

/// The body as sent, decompressed: `gzip`, `deflate`, or none (`snappy`
/// is Loki's hint that a protobuf body is snappy-compressed, which its
/// decoder undoes). At most `limit` bytes.
pub fn decompress(raw: &[u8], encoding: Option<&str>, limit: usize) -> Result<Vec<u8>, PushError> {
    let bounded = |reader: &mut dyn Read| -> Result<Vec<u8>, PushError> {
        let mut out = Vec::new();
        reader
            .take(limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| PushError::Decompress(e.to_string()))?;
        if out.len() > limit {
            return Err(PushError::TooLarge { limit });
        }
        Ok(out)
    };
    match encoding.map(|e| e.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("identity") | Some("snappy") => Ok(raw.to_vec()),
        Some("gzip") | Some("x-gzip") => bounded(&mut flate2::read::GzDecoder::new(raw)),
        Some("deflate") => bounded(&mut flate2::read::ZlibDecoder::new(raw)),
        Some(other) => Err(PushError::Encoding(other.to_owned())),
    }
}

/// A raw snappy block (Loki's protobuf bodies), within `limit`.
pub(super) fn unsnappy(raw: &[u8], limit: usize) -> Result<Vec<u8>, PushError> {
    let len = snap::raw::decompress_len(raw).map_err(|e| PushError::Decompress(e.to_string()))?;
    if len > limit {
        return Err(PushError::TooLarge { limit });
    }
    snap::raw::Decoder::new()
        .decompress_vec(raw)
        .map_err(|e| PushError::Decompress(format!("snappy: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn gzip_within_the_limit() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&[b'x'; 1000]).unwrap();
        let raw = gz.finish().unwrap();
        assert_eq!(decompress(&raw, Some("gzip"), 1000).unwrap().len(), 1000);
        assert_eq!(
            decompress(&raw, Some("gzip"), 999),
            Err(PushError::TooLarge { limit: 999 })
        );
        assert!(matches!(
            decompress(b"abc", Some("br"), 10),
            Err(PushError::Encoding(e)) if e == "br"
        ));
        let block = snap::raw::Encoder::new()
            .compress_vec(b"hello hello hello")
            .unwrap();
        assert_eq!(unsnappy(&block, 100).unwrap(), b"hello hello hello");
        assert_eq!(unsnappy(&block, 5), Err(PushError::TooLarge { limit: 5 }));
    }
}
