//! The App Store: a repository of Wave app bundles kept in Drive with their metadata in a
//! database, an HTTP API with browser sign-in, and the `appstore` CLI.

pub mod api;
pub mod authz;
pub mod bundle;
pub mod cli;
pub mod config;
pub mod import;
pub mod metrics;
pub mod repository;
pub mod server;
pub mod store;
pub mod web;

/// The OpenAPI document of the HTTP API, served at `/api/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");
