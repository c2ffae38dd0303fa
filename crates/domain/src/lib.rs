//! Jangar's domain: the data model, its rules and the function catalogue.
//! Each function module is named after its Convex module: `chatSessions:create`
//! lives in `chat_sessions.rs` as `create`.

pub mod access;
pub mod agent_sessions;
pub mod approval_requests;
pub mod artifacts;
pub mod chat_messages;
pub mod chat_sessions;
pub mod common;
pub mod error;
pub mod events;
pub mod messages;
pub mod projects;
pub mod registry;
pub mod repos;
pub mod runs;
pub mod schema;
pub mod sessions;
pub mod status;
pub mod steps;
pub mod teams;
pub mod threads;
pub mod tool_calls;
pub mod work_orders;

use registry::Registry;

/// Every public function of the catalogue.
pub fn registry() -> Registry {
    let mut functions = Vec::new();
    functions.extend(chat_sessions::functions());
    functions.extend(chat_messages::functions());
    functions.extend(work_orders::functions());
    functions.extend(events::functions());
    functions.extend(runs::functions());
    functions.extend(steps::functions());
    functions.extend(artifacts::functions());
    functions.extend(sessions::functions());
    functions.extend(threads::functions());
    functions.extend(messages::functions());
    functions.extend(agent_sessions::functions());
    functions.extend(tool_calls::functions());
    functions.extend(approval_requests::functions());
    functions.extend(teams::functions());
    functions.extend(repos::functions());
    functions.extend(projects::functions());
    Registry::new(functions)
}

#[cfg(test)]
mod tests;
