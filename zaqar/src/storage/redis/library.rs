//! The per-queue scripts as one Redis function library.
//!
//! Every per-queue script shares `common.lua` (and the walks of `scan.lua`).
//! Run as `EVALSHA`, Lua builds each helper that file defines again on
//! every call, and collects them afterwards as garbage: on a stats call that
//! was about a quarter of Redis' time. Redis 7 keeps a function library's
//! helpers built once per node: the library holds `common.lua`, `scan.lua`
//! and each script as a function (`FCALL`), whose first step, `begin(ARGV)`,
//! sets the call's state (so no call sees another's).
//!
//! The library's name and its functions' names carry a hash of its source,
//! so servers of different versions share a Redis without replacing each
//! other's functions. It is loaded (`FUNCTION LOAD REPLACE`, on every master
//! of a cluster) when a call finds its function missing: at first use, and
//! after a Redis restart without persistence; replicas receive it with the
//! data, so a promoted replica has it. A Redis without functions (before 7)
//! answers `FCALL` with "unknown command": from then on this store runs the
//! same scripts as `EVALSHA`, each with its helpers prepended, as does
//! `[drivers:message_store:redis] lua_functions = false`.

use std::sync::atomic::{AtomicBool, Ordering};

use ::redis::{FromRedisValue, RedisError, RedisResult, Script, ToRedisArgs};
use sha2::{Digest, Sha256};

/// What a script needs before its own code.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Prelude {
    /// Nothing: a script of its own (subscriptions).
    None,
    /// `common.lua`, with `begin(ARGV)`.
    Queue,
    /// `common.lua` and `scan.lua`, with `begin(ARGV)` and `begin_scan()`.
    Scan,
}

/// One script of the library: its name and its own code.
struct Source {
    name: &'static str,
    prelude: Prelude,
    body: &'static str,
}

const COMMON: &str = include_str!("common.lua");
const SCAN: &str = include_str!("scan.lua");

/// Every script the library holds, by name.
const SOURCES: &[Source] = &[
    source("post", Prelude::Queue, include_str!("post.lua")),
    source("list", Prelude::Scan, include_str!("list.lua")),
    source("get", Prelude::Queue, include_str!("get.lua")),
    source("delete", Prelude::Queue, include_str!("delete.lua")),
    source(
        "bulk_delete",
        Prelude::Queue,
        include_str!("bulk_delete.lua"),
    ),
    source("pop", Prelude::Scan, include_str!("pop.lua")),
    source("stats", Prelude::Queue, include_str!("stats.lua")),
    source("purge", Prelude::Queue, include_str!("purge.lua")),
    source(
        "claim_create",
        Prelude::Scan,
        include_str!("claim_create.lua"),
    ),
    source("claim_get", Prelude::Queue, include_str!("claim_get.lua")),
    source(
        "claim_update",
        Prelude::Queue,
        include_str!("claim_update.lua"),
    ),
    source(
        "claim_delete",
        Prelude::Queue,
        include_str!("claim_delete.lua"),
    ),
    source("dlq_read", Prelude::Queue, include_str!("dlq_read.lua")),
    source("dlq_insert", Prelude::Queue, include_str!("dlq_insert.lua")),
    source("dlq_ack", Prelude::Queue, include_str!("dlq_ack.lua")),
    source(
        "subscription",
        Prelude::None,
        include_str!("subscription.lua"),
    ),
];

const fn source(name: &'static str, prelude: Prelude, body: &'static str) -> Source {
    Source {
        name,
        prelude,
        body,
    }
}

/// The library: its source, and whether this store still calls it.
pub(super) struct Library {
    /// `FUNCTION LOAD` text.
    source: String,
    /// Prefix of every function's name: `zaqar_<hash>`.
    name: String,
    /// False once Redis turned out to have no functions, or when
    /// configured so: every call goes as `EVALSHA`.
    functions: AtomicBool,
}

/// One script, callable either way.
pub(super) struct LibraryScript {
    /// Its `FCALL` name.
    function: String,
    /// The whole script (preludes prepended) for `EVALSHA`.
    eval: Script,
}

impl Library {
    /// The library; `functions = false` runs every script as `EVALSHA`.
    pub(super) fn new(functions: bool) -> Self {
        let mut hash = Sha256::new();
        for part in [COMMON, SCAN] {
            hash.update(part.as_bytes());
        }
        for s in SOURCES {
            hash.update(s.name.as_bytes());
            hash.update([s.prelude as u8]);
            hash.update(s.body.as_bytes());
        }
        let digest = hash.finalize();
        let name = format!("zaqar_{}", hex(&digest[..8]));
        let mut source = format!("#!lua name={name}\n{COMMON}\n{SCAN}\n");
        for s in SOURCES {
            source.push_str(&format!(
                "redis.register_function('{name}_{}', function(KEYS, ARGV)\n{}{}\nend)\n",
                s.name,
                prologue(s.prelude),
                s.body
            ));
        }
        Library {
            source,
            name,
            functions: AtomicBool::new(functions),
        }
    }

    /// Script `name` of [`SOURCES`].
    ///
    /// # Panics
    /// When there is no such script (a mistake in this module).
    pub(super) fn script(&self, name: &str) -> LibraryScript {
        let s = SOURCES
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no script {name} in the library"));
        let preludes = match s.prelude {
            Prelude::None => String::new(),
            Prelude::Queue => format!("{COMMON}\n"),
            Prelude::Scan => format!("{COMMON}\n{SCAN}\n"),
        };
        LibraryScript {
            function: format!("{}_{}", self.name, s.name),
            eval: Script::new(&format!("{preludes}{}{}", prologue(s.prelude), s.body)),
        }
    }

    /// The library's name (`zaqar_<hash>`).
    #[cfg(test)]
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// Whether calls go as `FCALL`.
    pub(super) fn uses_functions(&self) -> bool {
        self.functions.load(Ordering::Relaxed)
    }

    /// Runs `script` with `keys` and `args`: `FCALL`, loading the library
    /// when Redis does not have it, or `EVALSHA`.
    pub(super) async fn call<T: FromRedisValue>(
        &self,
        script: &LibraryScript,
        keys: &[Vec<u8>],
        args: &[Vec<u8>],
        conn: &mut impl ::redis::aio::ConnectionLike,
    ) -> RedisResult<T> {
        if self.uses_functions() {
            let mut cmd = ::redis::cmd("FCALL");
            cmd.arg(&script.function)
                .arg(keys.len())
                .arg(keys)
                .arg(args);
            match cmd.query_async(conn).await {
                Err(e) if function_missing(&e) => {
                    ::redis::cmd("FUNCTION")
                        .arg("LOAD")
                        .arg("REPLACE")
                        .arg(&self.source)
                        .query_async::<()>(conn)
                        .await?;
                    return cmd.query_async(conn).await;
                }
                Err(e) if no_functions(&e) => {
                    tracing::warn!(
                        "this Redis has no functions (before 7.0): Lua scripts run as EVALSHA"
                    );
                    self.functions.store(false, Ordering::Relaxed);
                }
                other => return other,
            }
        }
        let mut call = script.eval.prepare_invoke();
        for k in keys {
            call.key(k);
        }
        for a in args {
            call.arg(a);
        }
        call.invoke_async(conn).await
    }
}

/// A script's keys and arguments, collected for [`Library::call`].
#[derive(Default)]
pub(super) struct Args {
    /// `KEYS`.
    pub keys: Vec<Vec<u8>>,
    /// `ARGV`.
    pub args: Vec<Vec<u8>>,
}

impl Args {
    /// Adds a key.
    pub fn key(&mut self, key: impl ToRedisArgs) -> &mut Self {
        key.write_redis_args(&mut self.keys);
        self
    }

    /// Adds an argument.
    pub fn arg(&mut self, arg: impl ToRedisArgs) -> &mut Self {
        arg.write_redis_args(&mut self.args);
        self
    }
}

/// What starts each call of a script, before its own code.
fn prologue(prelude: Prelude) -> &'static str {
    match prelude {
        Prelude::None => "",
        Prelude::Queue => "begin(ARGV)\n",
        Prelude::Scan => "begin(ARGV)\nbegin_scan()\n",
    }
}

/// `FCALL` of a function this Redis node does not have.
fn function_missing(e: &RedisError) -> bool {
    e.to_string().contains("Function not found")
}

/// `FCALL` on a Redis without functions.
fn no_functions(e: &RedisError) -> bool {
    let text = e.to_string();
    text.contains("unknown command") && text.to_ascii_lowercase().contains("fcall")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
