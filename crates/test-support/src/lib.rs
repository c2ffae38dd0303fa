//! Helpers for Jangar's tests: temporary directories and a throwaway PostgreSQL
//! server always; with the `server` feature (the default) also a Jangar server
//! on a free loopback port with a fresh data directory, for black-box tests,
//! and an identity provider.

pub mod postgres;
#[cfg(feature = "server")]
pub mod tokens;

#[cfg(feature = "server")]
mod server;
#[cfg(feature = "server")]
pub use server::*;

pub use tempfile::TempDir;

/// A fresh temporary directory, removed when dropped.
pub fn temp_dir() -> TempDir {
    tempfile::Builder::new().prefix("jangar-test-").tempdir().expect("a temporary directory")
}
