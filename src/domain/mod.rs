//! Jangar's domain: the data model, its rules and the function catalogue.
//! Each function module is named after its Convex module: `chatSessions:create`
//! lives in `chat_sessions.rs` as `create`.

pub mod chat_messages;
pub mod chat_sessions;
pub mod common;
pub mod error;
pub mod registry;
pub mod schema;
pub mod work_orders;

use registry::Registry;

/// Every public function of the catalogue.
pub fn registry() -> Registry {
    let mut functions = Vec::new();
    functions.extend(chat_sessions::functions());
    functions.extend(chat_messages::functions());
    functions.extend(work_orders::functions());
    Registry::new(functions)
}

#[cfg(test)]
mod tests;
