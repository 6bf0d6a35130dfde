//! Secrets at rest, sealed with the server key: ChaCha20-Poly1305 under a key derived from
//! the server key, bound to a context (such as the access key id a secret belongs to).
//! Older server keys still open what they sealed, so keys can rotate.

use base64_simd::STANDARD as B64;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce};

use crate::ServerKey;

const LABEL: &str = "drive-sealed-secrets-v1\n";

/// Seals with the current server key; opens with it or an older one.
#[derive(Debug, Clone)]
pub struct Sealer {
    current: ServerKey,
    older: Vec<ServerKey>,
}

impl Sealer {
    /// A sealer with `current` and the `older` keys it still opens with.
    pub fn new(current: ServerKey, older: Vec<ServerKey>) -> Self {
        Self { current, older }
    }

    /// `secret` sealed for `context`, as text: `<kid>.<base64 nonce and ciphertext>`.
    pub fn seal(&self, context: &str, secret: &[u8]) -> String {
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).expect("the OS random source is available");
        let cipher = cipher(&self.current);
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: secret,
                    aad: context.as_bytes(),
                },
            )
            .expect("encryption of a small secret succeeds");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{}.{}", self.current.kid(), B64.encode_to_string(out))
    }

    /// The secret sealed for `context`; `None` if it was altered, sealed for another
    /// context, or sealed with a key this sealer does not have.
    pub fn open(&self, context: &str, sealed: &str) -> Option<Vec<u8>> {
        let (kid, data) = sealed.split_once('.')?;
        let key = std::iter::once(&self.current)
            .chain(&self.older)
            .find(|k| k.kid() == kid)?;
        let data = B64.decode_to_vec(data).ok()?;
        if data.len() < 12 {
            return None;
        }
        let (nonce, ciphertext) = data.split_at(12);
        cipher(key)
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .ok()
    }
}

fn cipher(key: &ServerKey) -> ChaCha20Poly1305 {
    ChaCha20Poly1305::new(&key.derive(LABEL).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_in_their_context_and_survive_rotation() {
        let (a, b) = (
            ServerKey::new(&[1; 32]).unwrap(),
            ServerKey::new(&[2; 32]).unwrap(),
        );
        let old = Sealer::new(a.clone(), vec![]);
        let sealed = old.seal("AKID1", b"the secret");
        assert!(!sealed.contains("the secret"));
        assert_eq!(
            old.open("AKID1", &sealed).as_deref(),
            Some(&b"the secret"[..])
        );
        assert_eq!(old.open("AKID2", &sealed), None);
        let rotated = Sealer::new(b.clone(), vec![a]);
        assert_eq!(
            rotated.open("AKID1", &sealed).as_deref(),
            Some(&b"the secret"[..])
        );
        assert_eq!(Sealer::new(b, vec![]).open("AKID1", &sealed), None);
        let mut altered = sealed.into_bytes();
        let last = altered.len() - 3;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            old.open("AKID1", &String::from_utf8(altered).unwrap()),
            None
        );
    }
}
