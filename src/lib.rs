//! Jangar: a Convex-compatible persistence and realtime backend for
//! coding-agent control planes.
//!
//! Layers, bottom up: [`engine`] (generic documents, storage, transactions),
//! [`domain`] (Jangar's tables and functions), [`api`] (HTTP protocol), and the
//! `jangar` binary (CLI and configuration).

pub mod api;
pub mod auth;
pub mod client;
pub mod codegen;
pub mod domain;
pub mod engine;
pub mod server;
