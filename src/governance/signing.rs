//! Keys in cosign's formats, on the `sigstore` crate: ECDSA P-256 key pairs
//! written as cosign writes them (an encrypted PKCS#8 private key PEM and a
//! public key PEM), signing with SHA-256 and ASN.1 DER signatures, and
//! verification with any public key type cosign accepts.

use std::path::Path;

use sha2::{Digest as _, Sha256};
use sigstore::crypto::signing_key::SigStoreKeyPair;
use sigstore::crypto::{CosignVerificationKey, SigStoreSigner, Signature, SigningScheme};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0}")]
    Key(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
}

fn key_error(e: impl std::fmt::Display) -> KeyError {
    KeyError::Key(e.to_string())
}

/// The key hint of a public key, as cosign computes it for bundles: standard
/// base64 of the SHA-256 of its DER (SubjectPublicKeyInfo) encoding.
fn hint_of(der: &[u8]) -> String {
    super::b64(&Sha256::digest(der))
}

/// PEM with LF line ends, as cosign writes it (the `pem` crate writes CRLF).
fn lf(pem: &str) -> String {
    pem.replace("\r\n", "\n")
}

/// A private key that signs.
pub struct SigningKey {
    signer: SigStoreSigner,
    public_pem: String,
    hint: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("hint", &self.hint)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A new ECDSA P-256 key pair (cosign's default).
    pub fn generate() -> Result<SigningKey, KeyError> {
        let signer = SigningScheme::ECDSA_P256_SHA256_ASN1
            .create_signer()
            .map_err(key_error)?;
        SigningKey::from_signer(signer)
    }

    fn from_signer(signer: SigStoreSigner) -> Result<SigningKey, KeyError> {
        let pair = signer.to_sigstore_keypair().map_err(key_error)?;
        let public_pem = lf(&pair.public_key_to_pem().map_err(key_error)?);
        let hint = hint_of(&pair.public_key_to_der().map_err(key_error)?);
        Ok(SigningKey {
            signer,
            public_pem,
            hint,
        })
    }

    /// Reads a private key PEM: cosign's encrypted format (with `password`) or
    /// unencrypted PKCS#8. Only ECDSA P-256 keys sign here.
    pub fn from_pem(pem: &[u8], password: Option<&[u8]>) -> Result<SigningKey, KeyError> {
        let text = String::from_utf8_lossy(pem);
        let pair = if text.contains("ENCRYPTED") {
            let password = password.unwrap_or_default();
            SigStoreKeyPair::from_encrypted_pem(pem, password).map_err(|e| {
                KeyError::Key(format!(
                    "cannot decrypt the private key (wrong password?): {e}"
                ))
            })?
        } else {
            SigStoreKeyPair::from_pem(pem).map_err(key_error)?
        };
        let signer = pair
            .to_sigstore_signer(&SigningScheme::ECDSA_P256_SHA256_ASN1)
            .map_err(|e| KeyError::Key(format!("only ECDSA P-256 keys can sign: {e}")))?;
        SigningKey::from_signer(signer)
    }

    pub fn read(path: &Path, password: Option<&[u8]>) -> Result<SigningKey, KeyError> {
        let pem = std::fs::read(path).map_err(|source| KeyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        SigningKey::from_pem(&pem, password)
    }

    /// The private key as cosign writes it (encrypted with `password`).
    pub fn to_encrypted_pem(&self, password: &[u8]) -> Result<String, KeyError> {
        let pair = self.signer.to_sigstore_keypair().map_err(key_error)?;
        Ok(lf(&pair
            .private_key_to_encrypted_pem(password)
            .map_err(key_error)?))
    }

    /// The private key as unencrypted PKCS#8 PEM.
    pub fn to_pem(&self) -> Result<String, KeyError> {
        let pair = self.signer.to_sigstore_keypair().map_err(key_error)?;
        Ok(lf(&pair.private_key_to_pem().map_err(key_error)?))
    }

    pub fn public_pem(&self) -> &str {
        &self.public_pem
    }

    /// The hint verifiers use to pick this key.
    pub fn hint(&self) -> &str {
        &self.hint
    }

    /// An ECDSA P-256 SHA-256 signature over `msg`, ASN.1 DER.
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.signer.sign(msg).map_err(key_error)
    }

    pub fn verify_key(&self) -> Result<VerifyKey, KeyError> {
        VerifyKey::from_pem(self.public_pem.as_bytes())
    }
}

/// A public key that verifies.
#[derive(Clone)]
pub struct VerifyKey {
    key: CosignVerificationKey,
    pem: String,
    hint: String,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey")
            .field("hint", &self.hint)
            .finish()
    }
}

impl VerifyKey {
    /// A public key PEM (ECDSA, Ed25519 or RSA, as cosign accepts).
    pub fn from_pem(pem: &[u8]) -> Result<VerifyKey, KeyError> {
        let key = CosignVerificationKey::try_from_pem(pem).map_err(key_error)?;
        let text = String::from_utf8_lossy(pem);
        let der = pem_body(&text).ok_or_else(|| KeyError::Key("not a PEM public key".into()))?;
        Ok(VerifyKey {
            key,
            pem: lf(text.trim()) + "\n",
            hint: hint_of(&der),
        })
    }

    pub fn read(path: &Path) -> Result<VerifyKey, KeyError> {
        let pem = std::fs::read(path).map_err(|source| KeyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        VerifyKey::from_pem(&pem)
    }

    pub fn pem(&self) -> &str {
        &self.pem
    }

    pub fn hint(&self) -> &str {
        &self.hint
    }

    /// Whether `signature` (raw bytes) is a signature of `msg` by this key.
    pub fn verifies(&self, signature: &[u8], msg: &[u8]) -> bool {
        self.key
            .verify_signature(Signature::Raw(signature), msg)
            .is_ok()
    }
}

/// The DER bytes of the first PEM block.
fn pem_body(text: &str) -> Option<Vec<u8>> {
    let start = text.find("-----BEGIN ")?;
    let after = &text[start..];
    let body_start = after.find('\n')? + 1;
    let end = after.find("-----END ")?;
    let body: String = after[body_start..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    super::unb64(&body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_cosign_formats() {
        let key = SigningKey::generate().unwrap();
        let sig = key.sign(b"payload").unwrap();
        let public = key.verify_key().unwrap();
        assert!(public.verifies(&sig, b"payload"));
        assert!(!public.verifies(&sig, b"payloaD"));
        assert_eq!(public.hint(), key.hint());

        let encrypted = key.to_encrypted_pem(b"secret").unwrap();
        assert!(
            encrypted.contains("ENCRYPTED SIGSTORE PRIVATE KEY"),
            "{encrypted}"
        );
        let back = SigningKey::from_pem(encrypted.as_bytes(), Some(b"secret")).unwrap();
        assert!(public.verifies(&back.sign(b"x").unwrap(), b"x"));
        assert!(SigningKey::from_pem(encrypted.as_bytes(), Some(b"wrong")).is_err());
        let plain = key.to_pem().unwrap();
        let back = SigningKey::from_pem(plain.as_bytes(), None).unwrap();
        assert_eq!(back.public_pem(), key.public_pem());
        assert!(VerifyKey::from_pem(b"not a key").is_err());
    }
}
