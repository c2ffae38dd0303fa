//! Jangar's binary crate: start-up and shutdown ([`server`]) and the generated client
//! code ([`codegen`]). The layers below are their own crates, each depending only on
//! those under it: `jangar-engine` (documents, storage, transactions), `jangar-domain`
//! (Jangar's tables and functions) and `jangar-api` (HTTP, sync, auth).

pub mod codegen;
pub mod remote;
pub mod server;
pub mod snapshots;
pub mod users;
