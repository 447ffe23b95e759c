//! Passwords as the auth file keeps them: argon2id PHC strings.

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

/// Shortest password `berth user` accepts.
pub const MIN_PASSWORD_LEN: usize = 8;

/// Argon2id with the parameters OWASP recommends as a minimum (19 MiB, 2
/// passes, 1 lane): about 20-50 ms a verification on a server core.
fn argon2() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::default())
}

/// The PHC string of `password` with a fresh salt.
pub fn hash(password: &str) -> Result<String, String> {
    argon2()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| format!("hashing the password: {e}"))
}

/// Whether `hash` is an argon2id PHC string this registry can verify against.
pub fn is_argon2id(hash: &str) -> bool {
    hash.starts_with("$argon2id$") && argon2::password_hash::phc::PasswordHash::new(hash).is_ok()
}

/// Whether `password` matches `hash` (with the parameters the hash names).
pub fn verify(password: &str, hash: &str) -> bool {
    argon2().verify_password(password.as_bytes(), hash).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_only_its_password() {
        let h = hash("correct horse").unwrap();
        assert!(is_argon2id(&h), "{h}");
        assert!(verify("correct horse", &h));
        assert!(!verify("correct horsf", &h));
        assert!(!verify("correct horse", "$argon2id$garbage"));
        assert_ne!(h, hash("correct horse").unwrap(), "salted");
        assert!(!is_argon2id("$2y$05$bcryptbcryptbcryptbcry"));
    }
}
