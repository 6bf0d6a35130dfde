//! One identity for Drive and the App Store: verification of OpenID Connect tokens,
//! the principal they describe, Drive's stateless session credentials, and secrets sealed
//! with the server key.

mod dev_issuer;
pub mod discovery;
mod keyfile;
mod oidc;
mod principal;
mod sealed;
mod session;
mod signer;

pub use dev_issuer::{Authorization, DEV_AUDIENCE, DevIssuer, DevUser, GrantError};
pub use keyfile::{ALNUM, KeyFileError, Secret, load_server_key, random_string, write_private};
pub use oidc::{ASYMMETRIC, IssuerConfig, Timing, Verified, Verifier, VerifyError};
pub use principal::{ClaimMapping, Principal};
pub use sealed::Sealer;
pub use session::{
    ACCESS_KEY_PREFIX, ServerKey, Session, SessionCredentials, SessionError, Sessions, ShortKey,
};
pub use signer::TokenSigner;
