//! Jangar's domain: the data model, its rules and the function catalogue.
//! Each function module is named after its Convex module: `chatSessions:create`
//! lives in `chat_sessions.rs` as `create`.

pub mod access;
pub(crate) mod agent_sessions;
pub(crate) mod approval_requests;
pub(crate) mod artifacts;
pub mod auth;
pub mod chat_messages;
pub mod chat_sessions;
pub mod common;
mod console;
pub mod error;
pub(crate) mod events;
pub mod messages;
pub mod projects;
pub mod registry;
pub(crate) mod repos;
pub mod runs;
pub mod schema;
pub(crate) mod sessions;
pub(crate) mod status;
pub(crate) mod steps;
pub mod system;
pub(crate) mod teams;
pub mod temporal;
pub(crate) mod threads;
pub(crate) mod tool_calls;
pub(crate) mod users;
pub(crate) mod work_orders;

use std::sync::Arc;

use registry::Registry;

/// Every public function of the catalogue (as a deployment without a Temporal bridge serves it).
pub fn registry() -> Registry {
    Registry::new(catalogue(None))
}

/// The catalogue and the system queries operators' tools call (`npx convex data`,
/// `function-spec`, the console), for a deployment reached at `deployment_url`, with a Temporal
/// bridge if `bridge` is given.
pub fn registry_serving(
    deployment_url: String,
    operations: Arc<system::Operations>,
    bridge: Option<temporal::BridgeSettings>,
) -> Registry {
    let bridged = bridge.is_some();
    let mut functions = catalogue(bridge.map(Arc::new));
    functions.extend(system::functions(deployment_url, operations));
    functions.extend(console::functions());
    if bridged {
        functions.extend(temporal::functions());
    }
    Registry::new(functions)
}

fn catalogue(bridge: Option<Arc<temporal::BridgeSettings>>) -> Vec<registry::Function> {
    let mut functions = Vec::new();
    functions.extend(chat_sessions::functions());
    functions.extend(chat_messages::functions());
    functions.extend(work_orders::functions(bridge));
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
    functions.extend(users::functions());
    functions
}

#[cfg(test)]
mod tests;
