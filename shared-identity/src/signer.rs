//! EdDSA signing of JSON Web Tokens with a key derived from the server key, for the
//! issuers this project runs itself (Drive's development issuer, the App Store's broker).

use base64_simd::URL_SAFE_NO_PAD as B64;
use ed25519_dalek::SigningKey;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::ServerKey;

/// Signs tokens with one Ed25519 key and publishes its public half.
pub struct TokenSigner {
    signing: SigningKey,
    kid: String,
}

impl TokenSigner {
    /// A signer whose key is derived from `server_key` for `label`, so replicas and restarts
    /// sharing the server key agree; its key id starts with `kid_prefix`.
    pub fn derive(server_key: &ServerKey, label: &str, kid_prefix: &str) -> Self {
        Self {
            signing: SigningKey::from_bytes(&server_key.derive(label)),
            kid: format!("{kid_prefix}-{}", server_key.kid()),
        }
    }

    /// The public key set (JWKS document).
    pub fn jwks(&self) -> Value {
        json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA",
            "kid": self.kid, "x": B64.encode_to_string(self.signing.verifying_key().as_bytes())}]})
    }

    /// The public key set, parsed, for a verifier that trusts it without fetching.
    pub fn key_set(&self) -> JwkSet {
        serde_json::from_value(self.jwks()).expect("the key set parses")
    }

    /// A compact JWS of `claims`.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        // PKCS#8 v1 wrapping of an Ed25519 seed (RFC 8410).
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend_from_slice(self.signing.as_bytes());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(&der))
            .expect("signing with a valid key succeeds")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_with_the_published_key() {
        let key = ServerKey::new(&[7; 32]).unwrap();
        let signer = TokenSigner::derive(&key, "test\n", "t");
        let token = signer.sign(&json!({"sub": "a", "exp": 4_000_000_000u64}));
        let set = signer.key_set();
        let jwk = &set.keys[0];
        let decoding = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
        let mut validation = jsonwebtoken::Validation::new(Algorithm::EdDSA);
        validation.validate_aud = false;
        let data = jsonwebtoken::decode::<Value>(&token, &decoding, &validation).unwrap();
        assert_eq!(data.claims["sub"], "a");
        let other = TokenSigner::derive(&key, "other\n", "t");
        assert!(
            jsonwebtoken::decode::<Value>(
                &other.sign(&json!({"sub": "a", "exp": 4_000_000_000u64})),
                &decoding,
                &validation
            )
            .is_err()
        );
    }
}
