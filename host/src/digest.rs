//! sha256 helpers shared by plugin loading, the artifact cache and the audit log.

use sha2::{Digest, Sha256};

/// The sha256 of `bytes`, as lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The sha256 of `value`'s JSON encoding, as lower-case hex, hashed as it is written (no copy
/// of the encoding is kept). A value that cannot be encoded gets the digest of no bytes.
pub fn sha256_json_hex(value: &impl serde::Serialize) -> String {
    let mut hasher = Sha256::new();
    match serde_json::to_writer(&mut hasher, value) {
        Ok(()) => hex::encode(hasher.finalize()),
        Err(_) => sha256_hex(b""),
    }
}

/// A [`std::hash::Hasher`] over sha256, so that `impl Hash` values (such as wasmtime's
/// precompile compatibility hash) get a digest that is stable across Rust versions.
#[derive(Default)]
pub struct Sha256Hasher(Sha256);

impl Sha256Hasher {
    /// The digest of everything hashed so far, as hex.
    pub fn hex(self) -> String {
        hex::encode(self.0.finalize())
    }
}

impl std::hash::Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().expect("sha256 has 32 bytes"))
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digest() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn a_json_digest_is_the_digest_of_the_encoding() {
        let value = serde_json::json!({"name": "pd", "ports": [2379, 2380]});
        assert_eq!(sha256_json_hex(&value), sha256_hex(&serde_json::to_vec(&value).unwrap()));
    }
}
