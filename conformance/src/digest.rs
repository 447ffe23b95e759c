//! Content digests (`sha256:<hex>`, `sha512:<hex>`).

use sha2::{Digest as _, Sha256, Sha512};

fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 0xf) as usize] as char);
    }
    s
}

/// `sha256:<hex>` of the data.
pub(crate) fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex(Sha256::digest(data).as_slice()))
}

/// `sha512:<hex>` of the data.
pub(crate) fn sha512(data: &[u8]) -> String {
    format!("sha512:{}", hex(Sha512::digest(data).as_slice()))
}

/// Whether `digest` is the digest of `data`: `Some(true/false)` for sha256 and
/// sha512, `None` for an algorithm the suite cannot compute.
pub(crate) fn matches(digest: &str, data: &[u8]) -> Option<bool> {
    let digest = digest.trim();
    match digest.split_once(':') {
        Some(("sha256", _)) => Some(sha256(data) == digest),
        Some(("sha512", _)) => Some(sha512(data) == digest),
        _ => None,
    }
}

/// A syntactically valid sha256 digest of nothing the registry holds.
pub(crate) fn unknown(run_id: &str, label: &str) -> String {
    sha256(format!("berth-conformance absent content {run_id} {label}").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        assert_eq!(
            sha256(b"{}"),
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert!(sha512(b"").starts_with("sha512:cf83e1357eefb8bdf1542850d66d8007"));
        assert_eq!(matches(&sha512(b"x"), b"x"), Some(true));
        assert_eq!(matches(&sha256(b"x"), b"y"), Some(false));
        assert_eq!(matches("md5:00", b"x"), None);
    }
}
