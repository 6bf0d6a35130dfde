//! One identity for Drive and the App Store: verification of OpenID Connect tokens,
//! the principal they describe, and Drive's stateless session credentials.

mod oidc;
mod principal;
mod session;

pub use oidc::{ASYMMETRIC, IssuerConfig, Timing, Verified, Verifier, VerifyError};
pub use principal::{ClaimMapping, Principal};
pub use session::{
    ACCESS_KEY_PREFIX, ServerKey, Session, SessionCredentials, SessionError, Sessions, ShortKey,
};
