//! The App Store: a repository of Wave app bundles kept in Drive with their metadata in a
//! database, an HTTP API with browser sign-in, a web UI, the `appstore` CLI, and the
//! scheduler that runs apps as instances behind the App Store's router with their users'
//! Drive identity.

pub mod api;
pub mod authz;
pub mod broker;
pub mod bundle;
pub mod cli;
pub mod config;
pub mod import;
pub mod instances;
pub mod metrics;
pub mod proxy;
pub mod repository;
pub mod router;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod ui;
pub mod web;

/// The OpenAPI document of the HTTP API, served at `/api/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");
