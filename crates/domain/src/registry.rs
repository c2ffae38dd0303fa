//! The function catalogue: every public function by its Convex path, with its
//! kind, argument validator and handler.

use std::collections::HashMap;
use std::sync::Arc;

use jangar_engine::cache::CachedResult;
use jangar_engine::database::{Database, MutationOutcome};
use jangar_engine::error::EngineError;
use jangar_engine::history::AsOf;
use jangar_engine::schema::{Schema, Validator};
use jangar_engine::storage::{MutationKey, Timestamp};
use jangar_engine::transaction::Transaction;

use super::access::{Audience, Caller, Ctx};
use jangar_engine::value::Value;

use super::common::Args;
use super::error::{AppError, ErrorCode, FunctionError, FunctionResult};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Query,
    Mutation,
    Action,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Query => "query",
            Kind::Mutation => "mutation",
            Kind::Action => "action",
        }
    }
}

/// A function's body. Most are plain `fn`s; a closure lets a function carry what the
/// deployment was started with (its URL, for the CLI's system queries).
pub type Handler = Box<dyn Fn(&mut Ctx<'_, '_>, &Args) -> FunctionResult + Send + Sync>;

pub struct Function {
    pub path: &'static str,
    pub kind: Kind,
    pub args: Validator,
    /// The shape of the result, for typed client bindings (and checked in tests).
    pub returns: Validator,
    /// The result depends on the wall clock, not only on the data: never cached,
    /// and subscriptions to it are re-run every second.
    pub time_dependent: bool,
    pub audience: Audience,
    pub(crate) handler: Handler,
}

impl Function {
    pub fn query(
        path: &'static str,
        args: Validator,
        returns: Validator,
        handler: impl Fn(&mut Ctx<'_, '_>, &Args) -> FunctionResult + Send + Sync + 'static,
    ) -> Function {
        Function::new(path, Kind::Query, args, returns, Box::new(handler))
    }

    pub fn mutation(
        path: &'static str,
        args: Validator,
        returns: Validator,
        handler: impl Fn(&mut Ctx<'_, '_>, &Args) -> FunctionResult + Send + Sync + 'static,
    ) -> Function {
        Function::new(path, Kind::Mutation, args, returns, Box::new(handler))
    }

    fn new(path: &'static str, kind: Kind, args: Validator, returns: Validator, handler: Handler) -> Function {
        Function { path, kind, args, returns, time_dependent: false, audience: Audience::Users, handler }
    }

    pub(crate) fn time_dependent(mut self) -> Function {
        self.time_dependent = true;
        self
    }

    /// Only admins may call it (see [`Audience::Workers`]).
    pub(crate) fn for_workers(mut self) -> Function {
        self.audience = Audience::Workers;
        self
    }

    /// Runs the function as `caller`. Debug builds (so every test) also check the
    /// result against `returns`, which keeps the generated client types honest.
    pub fn call(&self, tx: &mut Transaction<'_>, caller: &Caller, args: &Args) -> FunctionResult {
        self.audience.admits(caller, self.path)?;
        let result = (self.handler)(&mut Ctx::new(tx, caller), args)?;
        if cfg!(debug_assertions)
            && let Err(e) = self.returns.check(&result, "", tx.schema())
        {
            let message = format!("{} returned a value its declared result type does not allow: {e}", self.path);
            return Err(FunctionError::Engine(jangar_engine::error::EngineError::Schema(message)));
        }
        Ok(result)
    }
}

pub struct Registry {
    functions: HashMap<&'static str, Arc<Function>>,
}

/// Convex path rules: `module` alone means `module:default`; a `.js` suffix on the module is dropped.
pub fn canonical_path(path: &str) -> String {
    let (module, name) = path.split_once(':').unwrap_or((path, "default"));
    format!("{}:{name}", module.strip_suffix(".js").unwrap_or(module))
}

impl Registry {
    pub fn new(functions: Vec<Function>) -> Registry {
        let mut map = HashMap::new();
        for function in functions {
            let path = function.path;
            assert!(map.insert(path, Arc::new(function)).is_none(), "function {path} is registered twice");
        }
        Registry { functions: map }
    }

    pub fn get(&self, path: &str) -> Option<Arc<Function>> {
        self.functions.get(canonical_path(path).as_str()).cloned()
    }

    pub fn functions(&self) -> impl Iterator<Item = &Function> {
        self.functions.values().map(|f| &**f)
    }
}

/// Checks `args` against the function's validator and unwraps them.
pub fn check_args(function: &Function, args: Value, schema: &Schema) -> Result<Args, FunctionError> {
    let Value::Object(object) = args else {
        return Err(AppError::new(
            ErrorCode::InvalidArgument,
            format!("Arguments of {} must be an object.", function.path),
        )
        .into());
    };
    let object = Value::Object(object);
    function.args.check(&object, "", schema).map_err(|e| {
        AppError::new(ErrorCode::InvalidArgument, format!("ArgumentValidationError for {}: {e}", function.path))
    })?;
    let Value::Object(object) = object else { unreachable!("checked above") };
    Ok(Args(object))
}

/// A query's result, and whether the query cache answered it (the function did not run).
pub struct QueryAnswer {
    pub result: Arc<CachedResult>,
    pub cached: bool,
}

/// Runs a query function, or answers from the query cache when the same call
/// was computed and nothing it read has changed since.
pub async fn run_query(
    db: &Arc<Database>,
    function: Arc<Function>,
    caller: Caller,
    args: Args,
) -> Result<QueryAnswer, FunctionError> {
    // Checked before the cache: a result cached for an admin must not reach anyone else.
    function.audience.admits(&caller, function.path)?;
    let key = (!function.time_dependent)
        .then(|| format!("{}\u{0}{}\u{0}{}", caller.viewer.key(), function.path, Value::Object(args.0.clone())));
    if let Some(key) = &key
        && let Some(hit) =
            db.cached(key).await.map_err(|e| FunctionError::from(EngineError::Storage(e)).into_client_facing())?
    {
        return Ok(QueryAnswer { result: hit, cached: true });
    }
    let outcome =
        db.query(move |tx| function.call(tx, &caller, &args)).await.map_err(FunctionError::into_client_facing)?;
    let result = Arc::new(CachedResult::new(outcome.value));
    if let Some(key) = key {
        db.cache().insert(key, result.clone(), outcome.reads, outcome.ts);
    }
    Ok(QueryAnswer { result, cached: false })
}

/// Runs a query function as of the commit timestamp `at` (see [`Database::query_as_of`]); the
/// query cache is not used, it holds only the latest results.
pub async fn run_query_as_of(
    db: &Arc<Database>,
    function: Arc<Function>,
    caller: Caller,
    args: Args,
    at: Timestamp,
) -> Result<Result<Value, AsOf>, FunctionError> {
    function.audience.admits(&caller, function.path)?;
    db.query_as_of(at, move |tx| function.call(tx, &caller, &args)).await.map_err(FunctionError::into_client_facing)
}

/// Runs a mutation function in the next group commit.
pub async fn run_mutation(
    db: &Database,
    function: Arc<Function>,
    caller: Caller,
    args: Args,
) -> Result<MutationOutcome<Value>, FunctionError> {
    db.mutate(move |tx| function.call(tx, &caller, &args)).await.map_err(FunctionError::into_client_facing)
}

/// Queues a mutation that its client may send again after a reconnect (or a
/// retry), and returns its outcome to come: if a run with the same key already
/// committed, that run's result and commit timestamp, with nothing applied.
///
/// With a `fingerprint` (of the call: an HTTP `Idempotency-Key` names a call, not a socket's
/// request number), the record keeps it, and a key sent again with another call is refused.
pub async fn enqueue_mutation_once(
    db: &Database,
    function: Arc<Function>,
    caller: Caller,
    args: Args,
    key: MutationKey,
    fingerprint: Option<String>,
) -> Result<impl Future<Output = Result<MutationOutcome<Value>, FunctionError>> + Send + 'static, FunctionError> {
    let pending = db
        .enqueue(move |tx| {
            if let Some((ts, stored)) = tx.find_outcome(&key)? {
                return match (&fingerprint, stored) {
                    (None, value) => Ok((value, Some(ts))),
                    (Some(expected), Value::Object(mut record))
                        if record.get("fingerprint").and_then(Value::as_str) == Some(expected.as_str()) =>
                    {
                        Ok((record.remove("value").unwrap_or(Value::Null), Some(ts)))
                    }
                    (Some(_), _) => Err(AppError::new(
                        ErrorCode::IdempotencyKeyReused,
                        "This Idempotency-Key was used for another call (another function or other arguments).",
                    )
                    .into()),
                };
            }
            let value = function.call(tx, &caller, &args)?;
            let stored = match &fingerprint {
                None => value.clone(),
                Some(fingerprint) => Value::Object(
                    [
                        ("fingerprint".to_owned(), Value::from(fingerprint.as_str())),
                        ("value".to_owned(), value.clone()),
                    ]
                    .into_iter()
                    .collect(),
                ),
            };
            tx.record_outcome(&key, &stored)?;
            Ok((value, None))
        })
        .await
        .map_err(FunctionError::into_client_facing)?;
    Ok(async move {
        let outcome = pending.outcome().await.map_err(FunctionError::into_client_facing)?;
        let (value, replayed_ts) = outcome.value;
        Ok(MutationOutcome { value, ts: replayed_ts.unwrap_or(outcome.ts) })
    })
}
