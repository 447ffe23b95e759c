//! `Range` requests on blobs (RFC 9110 §14) and `Content-Range` on upload chunks.

use axum::http::{HeaderValue, StatusCode, header};

use crate::http::error::ApiError;
use crate::registry::ChunkRange;
use crate::store::ByteRange;

fn unsatisfiable(size: u64) -> ApiError {
    let err = ApiError::new(
        StatusCode::RANGE_NOT_SATISFIABLE,
        "SIZE_INVALID",
        format!("requested range is not satisfiable for a blob of {size} bytes"),
    );
    match HeaderValue::from_str(&format!("bytes */{size}")) {
        Ok(v) => err.with_header(header::CONTENT_RANGE, v),
        Err(_) => err,
    }
}

/// Parses a `Range` header against a blob of `size` bytes. Units other than
/// `bytes` are ignored (as RFC 9110 requires), and so are multi-range requests,
/// which get the whole blob; a malformed or unsatisfiable byte range is a 416.
pub fn parse_range(value: &str, size: u64) -> Result<Option<ByteRange>, ApiError> {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec
        .trim()
        .split_once('-')
        .ok_or_else(|| unsatisfiable(size))?;
    let num = |s: &str| s.trim().parse::<u64>().map_err(|_| unsatisfiable(size));
    if size == 0 {
        return Err(unsatisfiable(size));
    }
    let last = size - 1;
    let range = match (a.trim().is_empty(), b.trim().is_empty()) {
        (false, false) => {
            let (start, end) = (num(a)?, num(b)?);
            if start > end || start > last {
                return Err(unsatisfiable(size));
            }
            ByteRange {
                start,
                end: end.min(last),
            }
        }
        (false, true) => {
            let start = num(a)?;
            if start > last {
                return Err(unsatisfiable(size));
            }
            ByteRange { start, end: last }
        }
        (true, false) => {
            let n = num(b)?;
            if n == 0 {
                return Err(unsatisfiable(size));
            }
            ByteRange {
                start: size.saturating_sub(n),
                end: last,
            }
        }
        (true, true) => return Err(unsatisfiable(size)),
    };
    Ok(Some(range))
}

/// Parses an upload chunk's `Content-Range`: `start-end`, also accepting the
/// `bytes ` / `bytes=` prefixes and a `/total` suffix some clients send.
pub fn parse_content_range(value: &str) -> Option<ChunkRange> {
    let v = value.trim();
    let v = v
        .strip_prefix("bytes=")
        .or_else(|| v.strip_prefix("bytes "))
        .unwrap_or(v);
    let v = v.split_once('/').map_or(v, |(r, _)| r);
    let (a, b) = v.split_once('-')?;
    let start = a.trim().parse().ok()?;
    let end = b.trim().parse().ok()?;
    (start <= end).then_some(ChunkRange { start, end })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, end: u64) -> Option<ByteRange> {
        Some(ByteRange { start, end })
    }

    #[test]
    fn byte_ranges() {
        assert_eq!(parse_range("bytes=0-9", 100).unwrap(), r(0, 9));
        assert_eq!(parse_range("bytes=90-200", 100).unwrap(), r(90, 99));
        assert_eq!(parse_range("bytes=10-", 100).unwrap(), r(10, 99));
        assert_eq!(parse_range("bytes=-10", 100).unwrap(), r(90, 99));
        assert_eq!(parse_range("bytes=-1000", 100).unwrap(), r(0, 99));
        assert_eq!(parse_range("items=0-1", 100).unwrap(), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 100).unwrap(), None);
        for bad in [
            "bytes=100-",
            "bytes=5-2",
            "bytes=x-1",
            "bytes=-0",
            "bytes=-",
            "bytes=7",
        ] {
            let e = parse_range(bad, 100).unwrap_err();
            assert_eq!(e.status, StatusCode::RANGE_NOT_SATISFIABLE, "{bad}");
        }
        assert!(parse_range("bytes=0-0", 0).is_err());
    }

    #[test]
    fn content_ranges() {
        assert_eq!(
            parse_content_range("0-99"),
            Some(ChunkRange { start: 0, end: 99 })
        );
        assert_eq!(
            parse_content_range("bytes=5-9"),
            Some(ChunkRange { start: 5, end: 9 })
        );
        assert_eq!(
            parse_content_range("bytes 5-9/100"),
            Some(ChunkRange { start: 5, end: 9 })
        );
        for bad in ["", "5", "a-b", "9-5", "-5", "5-"] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }
}
