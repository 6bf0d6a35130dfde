//! `.wave` bundles: safe reading of uploaded archives, `app.toml`, the pictures the store
//! shows, and building a bundle from an app directory.

pub mod archive;
pub mod assets;
pub mod manifest;
pub mod pack;
