//! The servers under test, the clients that drive them, and the properties
//! every answer must have.
//!
//! The servers run in this process, on port 0, on a runtime of their own
//! whose threads are named `zaqar-fuzz-srv…`, so a panic on any of them
//! (a request handler, the notifier, a blocking SQLite call) is seen by the
//! panic hook installed here even though tokio or hyper catch it. One
//! server uses SQLite in a directory under the target dir; with
//! `ZAQAR_TEST_REDIS_URL` set a second one uses that Redis (a key prefix of
//! its own). Every case runs against each.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::Value;

use crate::case::{Case, Fill, HttpCase, RawCase, WsCase, WsFrame, QUEUE};

/// Most bytes an answer may have beyond 4× what its case sent (a fresh
/// project per case: whatever an answer shows, the case put there, plus
/// fixed documents such as the home document).
pub const ANSWER_SLACK: usize = 256 * 1024;
/// Most bytes of an HTTP answer's head.
pub const MAX_HEAD: usize = 16 * 1024;
/// How long an answer may take (a debug build under load).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// The WebSocket transport's frame limit (`WsLimits::max_frame_size`).
pub const MAX_WS_FRAME: usize = 1024 * 1024;
/// Growth of the process' resident memory the whole run may cause.
pub const MAX_RSS_GROWTH: u64 = 200 * 1024 * 1024;

const SERVER_THREAD: &str = "zaqar-fuzz-srv";

/// Panics seen on the servers' threads.
static SERVER_PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// One running server.
pub struct Server {
    /// The store it uses (`sqlite`, `redis`).
    pub store: &'static str,
    /// Its HTTP address.
    pub http: SocketAddr,
    /// Its WebSocket address.
    pub ws: SocketAddr,
    stopped: Arc<AtomicBool>,
}

impl Server {
    /// Whether the server's task is still running.
    pub fn alive(&self) -> bool {
        !self.stopped.load(Ordering::Acquire)
    }
}

struct World {
    servers: Vec<Server>,
    keystone: Server,
    rss_baseline: u64,
}

static WORLD: OnceLock<World> = OnceLock::new();

/// The servers every case runs against (started on first use).
pub fn servers() -> &'static [Server] {
    &world().servers
}

/// A server with `auth_strategy = keystone` whose Keystone does not
/// answer (nothing listens on its port): no request may get through.
pub fn keystone_server() -> &'static Server {
    &world().keystone
}

fn world() -> &'static World {
    WORLD.get_or_init(start)
}

fn config_text(store: &str, data: &std::path::Path) -> String {
    let unreachable = "http://127.0.0.1:1/v3";
    let auth = if store == "keystone" {
        format!(
            "auth_strategy = keystone\n\
             [keystone_authtoken]\nwww_authenticate_uri = {unreachable}\nauth_url = {unreachable}\n\
             auth_type = password\nusername = zaqar\npassword = x\nproject_name = service\n\
             user_domain_name = Default\nproject_domain_name = Default\nhttp_request_max_retries = 0\n"
        )
    } else {
        String::new()
    };
    let store_section = match store {
        "redis" => {
            let url = std::env::var("ZAQAR_TEST_REDIS_URL").unwrap_or_default();
            let sep = if url.contains('?') { '&' } else { '?' };
            let prefix = format!("zqfuzz{}", uuid::Uuid::new_v4().simple());
            format!(
                "[drivers]\nmessage_store = redis\n\
                 [drivers:message_store:redis]\nuri = {url}{sep}key_prefix={prefix}\n"
            )
        }
        _ => format!(
            "[drivers:message_store:sqlite]\nuri = {}\n",
            data.join("zaqar.db").display()
        ),
    };
    // admin_mode: /v2/health exists. Signed URLs have a key, so signatures
    // are verified (and refused). Webhooks may reach loopback, where the
    // only subscriber the grammar names (port 1) refuses at once, so
    // `_retry_policy` schedules really run; mail goes to /bin/true. A
    // long poll waits at most a second, so a `wait` costs the run little.
    format!(
        "[DEFAULT]\nadmin_mode = true\n{auth}{store_section}\
         [transport]\nmax_long_poll_wait = 1\n\
         [drivers:transport:wsgi]\nheader_read_timeout = 1\n\
         [signed_url]\nsecret_key = fuzz-secret\n\
         [notification]\nsmtp_command = /bin/true\nwebhook_timeout = 1\n\
         allowed_subscriber_networks = 127.0.0.0/8, ::1/128\n"
    )
}

fn start() -> World {
    install_panic_hook();
    let mut stores = vec!["sqlite"];
    if std::env::var("ZAQAR_TEST_REDIS_URL").is_ok_and(|u| !u.is_empty()) {
        stores.push("redis");
    }
    let root = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-servers");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("data directory");
    stores.push("keystone");
    let mut servers = Vec::new();
    let (tx, rx) = std::sync::mpsc::channel();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(SERVER_THREAD)
        .enable_all()
        .build()
        .expect("server runtime");
    for store in stores {
        let dir = root.join(store);
        std::fs::create_dir_all(&dir).unwrap();
        let text = config_text(store, &dir);
        let config = Arc::new(zaqar::config::Config::parse(&text).expect("fuzz config"));
        let http = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ws = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        http.set_nonblocking(true).unwrap();
        ws.set_nonblocking(true).unwrap();
        let server = Server {
            store,
            http: http.local_addr().unwrap(),
            ws: ws.local_addr().unwrap(),
            stopped: Arc::new(AtomicBool::new(false)),
        };
        let stopped = server.stopped.clone();
        let tx = tx.clone();
        runtime.spawn(async move {
            let (api, hub) = zaqar::server::build(config).expect("server builds");
            let http = tokio::net::TcpListener::from_std(http).unwrap();
            let ws = tokio::net::TcpListener::from_std(ws).unwrap();
            let _ = tx.send(());
            let result = zaqar::server::serve_all(
                api,
                Some(http),
                hub.map(|h| (ws, h)),
                std::future::pending(),
            )
            .await;
            eprintln!("fuzz server ({store}) stopped: {result:?}");
            stopped.store(true, Ordering::Release);
        });
        servers.push(server);
    }
    for _ in &servers {
        rx.recv_timeout(Duration::from_secs(60))
            .expect("servers start");
    }
    // The runtime lives as long as the test process.
    std::mem::forget(runtime);
    let keystone = servers.pop().expect("the keystone server");
    for s in &servers {
        let answer = send_http(s.http, b"GET /v2/ping HTTP/1.1\r\nHost: x\r\nClient-ID: 3381af92-2b9e-11e3-b191-71861300734c\r\nX-Project-ID: p\r\nConnection: close\r\n\r\n", false)
            .expect("ping")
            .expect("an answer to ping");
        assert_eq!(answer.status, 204, "{} server answers ping", s.store);
    }
    World {
        servers,
        keystone,
        rss_baseline: rss_bytes(),
    }
}

fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with(SERVER_THREAD))
        {
            let what = format!("{info}");
            SERVER_PANICS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(what);
        }
        previous(info);
    }));
}

/// Panics on the servers' threads so far.
pub fn server_panics() -> Vec<String> {
    SERVER_PANICS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

/// The process' resident set size (`VmRSS` of /proc/self/status).
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// Fails when the process grew past the bound since the servers started.
pub fn check_memory() -> Result<(), String> {
    let now = rss_bytes();
    let base = world().rss_baseline;
    if now > base + MAX_RSS_GROWTH {
        return Err(format!(
            "resident memory grew from {} MiB to {} MiB (bound: +{} MiB)",
            base >> 20,
            now >> 20,
            MAX_RSS_GROWTH >> 20
        ));
    }
    Ok(())
}

// ------------------------------------------------------------------ HTTP

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Header lines.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Body (decoded from chunks).
    pub body: Vec<u8>,
}

impl Answer {
    /// A header's value (the first of that name).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The body as JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Reads until `buf` holds `n` bytes past `from`, or EOF.
fn fill_to(stream: &mut TcpStream, buf: &mut Vec<u8>, want: usize) -> std::io::Result<bool> {
    let mut chunk = [0u8; 16 * 1024];
    while buf.len() < want {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(false);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(true)
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Sends `request` on a new connection and reads one answer (`Ok(None)`:
/// the server closed the connection without answering). Answers larger
/// than `limit` are an error.
pub fn send_http(addr: SocketAddr, request: &[u8], head: bool) -> Result<Option<Answer>, String> {
    send_http_bounded(addr, request, head, usize::MAX)
}

/// [`send_http`] with a bound on the answer's size.
pub fn send_http_bounded(
    addr: SocketAddr,
    request: &[u8],
    head: bool,
    limit: usize,
) -> Result<Option<Answer>, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(ANSWER_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(ANSWER_TIMEOUT)).unwrap();
    stream.set_nodelay(true).ok();
    // The server may answer (and close) before reading everything; a
    // failed write is then not the case's failure: the answer decides.
    let _ = stream.write_all(request);
    let mut buf = Vec::new();
    let io = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            format!("no answer within {ANSWER_TIMEOUT:?}")
        }
        _ => format!("read: {e}"),
    };
    let mut start = 0;
    loop {
        // The head.
        let end = loop {
            if let Some(p) = find(&buf, b"\r\n\r\n", start) {
                break p;
            }
            if buf.len() - start > MAX_HEAD {
                return Err(format!("answer head longer than {MAX_HEAD} bytes"));
            }
            let want = buf.len() + 1;
            match fill_to(&mut stream, &mut buf, want) {
                Ok(true) => {}
                Ok(false) if buf.len() == start => return Ok(None),
                Ok(false) => return Err("connection closed inside an answer head".into()),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && buf.len() == start => {
                    return Ok(None)
                }
                Err(e) => return Err(io(e)),
            }
        };
        let head_text = String::from_utf8_lossy(&buf[start..end]).into_owned();
        let mut lines = head_text.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        let headers: Vec<(String, Vec<u8>)> = buf[start..end]
            .split(|b| *b == b'\n')
            .skip(1)
            .filter_map(|line| {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let colon = line.iter().position(|b| *b == b':')?;
                let name = String::from_utf8_lossy(&line[..colon]).trim().to_owned();
                let value = line[colon + 1..].trim_ascii().to_vec();
                Some((name, value))
            })
            .collect();
        let body_start = end + 4;
        if (100..200).contains(&status) {
            start = body_start;
            continue;
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        };
        let mut body = Vec::new();
        if !(head || status == 204 || status == 304) {
            if header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
                let mut at = body_start;
                loop {
                    let line_end = loop {
                        if let Some(p) = find(&buf, b"\r\n", at) {
                            break p;
                        }
                        let want = buf.len() + 1;
                        if !fill_to(&mut stream, &mut buf, want).map_err(io)? {
                            return Err("connection closed inside a chunked answer".into());
                        }
                    };
                    let size_text = String::from_utf8_lossy(&buf[at..line_end]).into_owned();
                    let size =
                        usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
                    at = line_end + 2;
                    if size == 0 {
                        break;
                    }
                    if body.len() + size > limit {
                        return Err(format!("answer body longer than {limit} bytes"));
                    }
                    if !fill_to(&mut stream, &mut buf, at + size + 2).map_err(io)? {
                        return Err("connection closed inside a chunk".into());
                    }
                    body.extend_from_slice(&buf[at..at + size]);
                    at += size + 2;
                }
            } else if let Some(len) = header("content-length") {
                let len: usize = len
                    .trim()
                    .parse()
                    .map_err(|_| format!("bad content-length {len:?}"))?;
                if len > limit {
                    return Err(format!("answer body of {len} bytes (bound {limit})"));
                }
                if !fill_to(&mut stream, &mut buf, body_start + len).map_err(io)? {
                    return Err("connection closed inside an answer body".into());
                }
                body.extend_from_slice(&buf[body_start..body_start + len]);
            } else {
                // Until the server closes.
                let mut rest = Vec::new();
                stream
                    .take(limit as u64 + 1)
                    .read_to_end(&mut rest)
                    .map_err(io)?;
                if rest.len() > limit {
                    return Err(format!("answer body longer than {limit} bytes"));
                }
                body = buf[body_start..].to_vec();
                body.extend_from_slice(&rest);
            }
        }
        return Ok(Some(Answer {
            status,
            headers,
            body,
        }));
    }
}

// ------------------------------------------------------------------ setup

static PROJECTS: AtomicU64 = AtomicU64::new(0);

/// A valid `Client-ID`.
pub const CLIENT: &str = "3381af92-2b9e-11e3-b191-71861300734c";

/// A project of its own for one run of a case.
pub fn fresh_project() -> String {
    format!(
        "fz{}-{}",
        std::process::id(),
        PROJECTS.fetch_add(1, Ordering::Relaxed)
    )
}

fn valid_request(method: &str, path: &str, project: &str, body: Option<&str>) -> Vec<u8> {
    let mut r = format!(
        "{method} {path} HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\nClient-ID: {CLIENT}\r\n\
         X-Project-ID: {project}\r\nContent-Type: application/json\r\n"
    );
    match body {
        Some(b) => r.push_str(&format!("Content-Length: {}\r\n\r\n{b}", b.len())),
        None => r.push_str("\r\n"),
    }
    r.into_bytes()
}

fn setup_call(
    server: &Server,
    method: &str,
    path: &str,
    project: &str,
    body: Option<&str>,
) -> Result<Value, String> {
    let answer = send_http(
        server.http,
        &valid_request(method, path, project, body),
        false,
    )?
    .ok_or_else(|| format!("setup {method} {path}: no answer"))?;
    if !(200..300).contains(&answer.status) {
        return Err(format!(
            "setup {method} {path}: {} {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        ));
    }
    Ok(answer.json().unwrap_or(Value::Null))
}

/// Creates `$QUEUE` in `project` with three messages, a claim on the
/// first and a webhook subscription; the placeholders naming them.
pub fn setup(server: &Server, project: &str) -> Result<Fill, String> {
    let q = format!("/v2/queues/{QUEUE}");
    setup_call(server, "PUT", &q, project, None)?;
    let posted = setup_call(
        server,
        "POST",
        &format!("{q}/messages"),
        project,
        Some(
            r#"{"messages": [{"body": {"n": 0}, "ttl": 300}, {"body": "one", "ttl": 300}, {"body": [2], "ttl": 300}]}"#,
        ),
    )?;
    let ids: Vec<String> = posted["resources"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|h| h.as_str()?.rsplit('/').next().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    if ids.len() != 3 {
        return Err(format!("setup post: {posted}"));
    }
    let claimed = setup_call(
        server,
        "POST",
        &format!("{q}/claims?limit=1"),
        project,
        Some(r#"{"ttl": 300, "grace": 60}"#),
    )?;
    let claimed_id = claimed["messages"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let claim = claimed["messages"][0]["href"]
        .as_str()
        .and_then(|h| h.split("claim_id=").nth(1))
        .unwrap_or_default()
        .to_owned();
    let message = ids
        .iter()
        .find(|id| **id != claimed_id)
        .cloned()
        .unwrap_or_default();
    let sub = setup_call(
        server,
        "POST",
        &format!("{q}/subscriptions"),
        project,
        Some(
            r#"{"subscriber": "http://127.0.0.1:1/fuzz", "ttl": 3600, "options": {"_retry_policy": {"retries_with_no_delay": 1, "minimum_delay_retries": 1, "maximum_delay_retries": 1, "minimum_delay": 1, "maximum_delay": 11}}}"#,
        ),
    )?;
    let subscription = sub["subscription_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if claim.is_empty() || subscription.is_empty() || message.is_empty() {
        return Err(format!("setup ids: claim {claimed}, subscription {sub}"));
    }
    // The topic of the same name: one message and one subscription.
    let t = format!("/v2/topics/{QUEUE}");
    setup_call(server, "PUT", &t, project, None)?;
    let posted = setup_call(
        server,
        "POST",
        &format!("{t}/messages"),
        project,
        Some(r#"{"messages": [{"body": {"topic": 0}, "ttl": 300}]}"#),
    )?;
    let topic_message = posted["resources"][0]
        .as_str()
        .and_then(|h| h.rsplit('/').next())
        .unwrap_or_default()
        .to_owned();
    let sub = setup_call(
        server,
        "POST",
        &format!("{t}/subscriptions"),
        project,
        Some(r#"{"subscriber": "http://127.0.0.1:1/fuzz-topic", "ttl": 3600}"#),
    )?;
    let topic_subscription = sub["subscription_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if topic_message.is_empty() || topic_subscription.is_empty() {
        return Err(format!("setup topic ids: {posted}, {sub}"));
    }
    let share = setup_call(
        server,
        "POST",
        &format!("{q}/share"),
        project,
        Some(
            r#"{"methods": ["GET", "POST", "PATCH", "DELETE"], "paths": ["messages", "claims", "subscriptions"]}"#,
        ),
    )?;
    let text = |k: &str| share[k].as_str().unwrap_or_default().to_owned();
    let list = |k: &str| {
        share[k]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default()
    };
    let grant = [
        text("signature"),
        text("expires"),
        list("methods"),
        list("paths"),
    ];
    if grant.iter().any(String::is_empty) {
        return Err(format!("setup share: {share}"));
    }
    Ok(Fill {
        project: project.to_owned(),
        client: CLIENT.to_owned(),
        message,
        claimed: claimed_id,
        claim,
        subscription,
        topic_message,
        topic_subscription,
        grant,
    })
}

// ------------------------------------------------------------------ running a case

/// What the runs of the cases saw (coverage statistics).
#[derive(Default, Debug)]
pub struct Stats {
    /// Cases run (times servers).
    pub runs: u64,
    /// Answers by status class (1xx..5xx at 1..5; 0: none).
    pub by_class: [u64; 6],
    /// Answers of the api core (HTTP: with a request id; WebSocket: every
    /// response frame).
    pub from_api: u64,
}

/// Runs `case` against every server and checks every property.
///
/// # Errors
/// The property that failed, on which server.
pub fn run_case(case: &Case, stats: &mut Stats) -> Result<(), String> {
    for server in servers() {
        run_on(server, case, stats, false).map_err(|e| format!("[{} store] {e}", server.store))?;
    }
    Ok(())
}

/// Runs `case` against the Keystone-mode server, whose Keystone is
/// unreachable, and checks that nothing got through: every answer is an
/// error (503 only because Keystone cannot be asked), but the versions
/// document (`GET /`, open as in the reference). No setup: nothing can be
/// created there.
///
/// # Errors
/// The property that failed.
pub fn run_keystone_case(case: &Case, stats: &mut Stats) -> Result<(), String> {
    run_on(keystone_server(), case, stats, true).map_err(|e| format!("[keystone mode] {e}"))
}

fn run_on(server: &Server, case: &Case, stats: &mut Stats, refused: bool) -> Result<(), String> {
    stats.runs += 1;
    let project = fresh_project();
    let fill = if case.setup() && !refused {
        setup(server, &project)?
    } else {
        Fill::without_setup(project, CLIENT.to_owned())
    };
    let result = match case {
        Case::Http(c) => run_http(server, c, &fill, stats, refused, 0).map(drop),
        Case::HttpRaw(c) => run_raw(server, c, &fill, stats, refused),
        Case::HttpSeq(c) => {
            let mut sent = 0;
            c.requests.iter().enumerate().try_for_each(|(i, r)| {
                sent += run_http(server, r, &fill, stats, refused, sent)
                    .map_err(|e| format!("request {i}: {e}"))?;
                Ok(())
            })
        }
        Case::Ws(c) => run_ws(server, c, &fill, stats, refused),
    };
    if !server.alive() {
        return Err("the server's task ended".into());
    }
    result
}

/// The largest answer a case may get after sending `sent` bytes in all
/// (what the case stored is all an answer can show, beside the setup's
/// few records and fixed documents).
fn answer_bound(sent: usize) -> usize {
    ANSWER_SLACK + 4 * sent
}

/// The properties of an HTTP answer. `strict`: the request was well-formed
/// HTTP, so an answer must come from the api core.
/// `refused`: nothing may succeed (Keystone mode without credentials) but
/// the open documents, and `options_of_open`: an `OPTIONS` of one of them.
fn check_http_answer(
    answer: Option<Answer>,
    strict: bool,
    head: bool,
    refused: bool,
    options_of_open: bool,
    stats: &mut Stats,
) -> Result<(), String> {
    let Some(a) = answer else {
        stats.by_class[0] += 1;
        if strict {
            return Err("the connection closed without an answer".into());
        }
        return Ok(());
    };
    stats.by_class[usize::from(a.status / 100).min(5)] += 1;
    let body_text = || String::from_utf8_lossy(&a.body[..a.body.len().min(2000)]).into_owned();
    let keystone_down = refused && a.status == 503;
    if a.status >= 500 && !keystone_down {
        return Err(format!("answered {} {}", a.status, body_text()));
    }
    // The open documents (OperationKind::is_open) need no credentials: the
    // versions (300) and the OpenAPI document (200).
    let open_document = (a.status == 300 && a.json().is_some_and(|d| d.get("versions").is_some()))
        || (a.status == 200 && a.json().is_some_and(|d| d.get("openapi").is_some()))
        || (options_of_open && a.status == 200 && a.header("allow").is_some());
    if refused && a.status < 400 && !open_document {
        return Err(format!(
            "answered {} without credentials in Keystone mode: {}",
            a.status,
            body_text()
        ));
    }
    let from_api = a.header("x-openstack-request-id").is_some();
    if from_api {
        stats.from_api += 1;
    } else if !(matches!(a.status, 400 | 414 | 431) && a.body.is_empty())
        || (strict && a.status == 400)
    {
        // hyper refuses by itself, without a body, only what is not HTTP
        // (400), a target past its limit (414) or too many header bytes
        // (431).
        return Err(format!(
            "answer {} did not come from the api core: {}",
            a.status,
            body_text()
        ));
    }
    if from_api && a.status >= 400 && !head {
        let doc = a
            .json()
            .ok_or_else(|| format!("error {} body is not JSON: {}", a.status, body_text()))?;
        if !doc.get("title").is_some_and(Value::is_string) {
            return Err(format!("error {} body has no \"title\": {doc}", a.status));
        }
    }
    if from_api
        && !head
        && a.header("content-type")
            .is_some_and(|t| t.starts_with(b"application/json"))
        && !a.body.is_empty()
        && a.json().is_none()
    {
        return Err(format!(
            "answer {} says JSON but is not: {}",
            a.status,
            body_text()
        ));
    }
    if let Some(location) = a.header("location") {
        if location.len() > 8192 {
            return Err(format!("Location of {} bytes", location.len()));
        }
    }
    Ok(())
}

/// Sends one request (after `before` bytes of the same case); the bytes
/// it sent.
fn run_http(
    server: &Server,
    case: &HttpCase,
    fill: &Fill,
    stats: &mut Stats,
    refused: bool,
    before: usize,
) -> Result<usize, String> {
    let bytes = case.to_bytes(fill);
    let answer = send_http_bounded(
        server.http,
        &bytes,
        case.is_head(),
        answer_bound(before + bytes.len()),
    )?;
    let options = options_of_open_document(&bytes);
    check_http_answer(
        answer,
        well_formed(case),
        case.is_head(),
        refused,
        options,
        stats,
    )?;
    Ok(bytes.len())
}

/// Whether the request `bytes` start with is an `OPTIONS` of an open
/// document (`OperationKind::is_open`: `/`, `/v2/openapi.json`), which
/// needs no credentials either: its answer is 200 with `Allow`.
fn options_of_open_document(bytes: &[u8]) -> bool {
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, target) = (parts.next(), parts.next().unwrap_or_default());
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    method == Some(&b"OPTIONS"[..]) && matches!(path, b"/" | b"/v2/openapi.json")
}

/// Whether hyper would hand the request to the api core (a method token,
/// a target of visible ASCII, header values without control bytes, names
/// that are tokens): otherwise hyper answers (or closes) by itself.
fn well_formed(case: &HttpCase) -> bool {
    let token = |b: &[u8]| {
        !b.is_empty()
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(c))
    };
    let value_ok = |b: &[u8]| b.iter().all(|&c| c == b'\t' || (c >= 0x20 && c != 0x7f));
    let framing_ok = !matches!(case.framing, crate::case::Framing::BadChunked(_));
    token(&case.method.0)
        && case.method.0 != b"CONNECT"
        && case.target.0.first() == Some(&b'/')
        && case
            .target
            .0
            .iter()
            .all(|&c| c > 0x20 && c < 0x7f && c != b'#')
        && case.headers.iter().all(|(n, v)| {
            token(&n.0)
                && value_ok(&v.0)
                && !v.0.first().is_some_and(|c| *c == b' ' || *c == b'\t')
                && !matches!(
                    n.0.to_ascii_lowercase().as_slice(),
                    b"content-length"
                        | b"transfer-encoding"
                        | b"host"
                        | b"connection"
                        | b"expect"
                        | b"upgrade"
                )
        })
        && framing_ok
}

fn run_raw(
    server: &Server,
    case: &RawCase,
    fill: &Fill,
    stats: &mut Stats,
    refused: bool,
) -> Result<(), String> {
    let mut bytes = fill.bytes(&case.bytes.0);
    // A mutation that broke the end of the head would leave the server
    // waiting for it (header_read_timeout): end it again. After a whole
    // request this is an empty pipelined one, which the server skips.
    bytes.extend_from_slice(b"\r\n\r\n");
    let answer = send_http_bounded(server.http, &bytes, case.head, answer_bound(bytes.len()))?;
    let options = options_of_open_document(&bytes);
    check_http_answer(answer, false, case.head, refused, options, stats)
}

// ------------------------------------------------------------------ WebSocket

type WsClient = tokio_tungstenite::tungstenite::WebSocket<TcpStream>;

fn ws_connect(server: &Server) -> Result<WsClient, String> {
    let stream = TcpStream::connect(server.ws).map_err(|e| format!("ws connect: {e}"))?;
    stream.set_read_timeout(Some(ANSWER_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(ANSWER_TIMEOUT)).unwrap();
    stream.set_nodelay(true).ok();
    let url = format!("ws://{}/", server.ws);
    let (socket, _) = tokio_tungstenite::tungstenite::client::client(url, stream)
        .map_err(|e| format!("ws handshake: {e}"))?;
    Ok(socket)
}

fn run_ws(
    server: &Server,
    case: &WsCase,
    fill: &Fill,
    stats: &mut Stats,
    refused: bool,
) -> Result<(), String> {
    use tokio_tungstenite::tungstenite::Message;
    let mut socket = ws_connect(server)?;
    let mut sent_total = 0;
    for (i, frame) in case.frames.iter().enumerate() {
        let fillf = |s: &str| fill.text(s);
        let (msg, binary) = match frame {
            WsFrame::Json(node) => (Message::text(node.filled(&fillf).to_json()), false),
            WsFrame::Msgpack(node) => (Message::binary(node.filled(&fillf).to_msgpack()), true),
            WsFrame::Text(t) => (Message::text(fill.text(t)), false),
            WsFrame::Binary(b) => (Message::binary(fill.bytes(&b.0)), true),
        };
        let sent = msg.len();
        sent_total += sent;
        socket
            .send(msg)
            .map_err(|e| format!("frame {i}: send: {e}"))?;
        // The answer is the next frame with a status; notifications of
        // this connection's subscriptions may come first.
        let answer = loop {
            let got = socket
                .read()
                .map_err(|e| format!("frame {i}: no answer: {e}"))?;
            let doc: Value = match &got {
                Message::Text(t) => {
                    if binary {
                        return Err(format!("frame {i}: a binary frame answered in text"));
                    }
                    serde_json::from_str(t)
                        .map_err(|e| format!("frame {i}: answer is not JSON: {e}"))?
                }
                Message::Binary(b) => {
                    if !binary {
                        return Err(format!("frame {i}: a text frame answered in binary"));
                    }
                    rmp_serde::from_slice(b)
                        .map_err(|e| format!("frame {i}: answer is not MessagePack: {e}"))?
                }
                Message::Close(Some(c))
                    if sent > MAX_WS_FRAME
                        && c.code == tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Size =>
                {
                    // Past the frame limit the server closes with 1009:
                    // the answer the limit promises.
                    return Ok(());
                }
                Message::Close(c) => return Err(format!("frame {i}: the server closed: {c:?}")),
                _ => continue,
            };
            if got.len() > answer_bound(sent_total) {
                return Err(format!("frame {i}: answer of {} bytes", got.len()));
            }
            if doc["headers"].get("status").is_some() {
                break doc;
            }
        };
        stats.from_api += 1;
        let status = answer["headers"]["status"]
            .as_u64()
            .ok_or_else(|| format!("frame {i}: status is not a number: {answer}"))?;
        stats.by_class[(status / 100).min(5) as usize] += 1;
        if status >= 500 && !(refused && status == 503) {
            return Err(format!("frame {i}: answered {status} {}", answer["body"]));
        }
        if refused && status < 400 {
            return Err(format!(
                "frame {i}: answered {status} without credentials in Keystone mode: {}",
                answer["body"]
            ));
        }
        // The one error without "error", as the reference's: a missing
        // queue's zero stats, answered with 404.
        let missing_queue_stats = status == 404 && answer["body"].get("messages").is_some();
        if status >= 400 && !missing_queue_stats {
            let body = &answer["body"];
            if !body.get("error").is_some_and(Value::is_string) {
                return Err(format!(
                    "frame {i}: error {status} without \"error\": {body}"
                ));
            }
            if body.get("title").is_some() && !body["title"].is_string() {
                return Err(format!(
                    "frame {i}: error {status} with a bad title: {body}"
                ));
            }
        }
        // As the reference's: the status and nothing else.
        if answer["headers"].as_object().map(|h| h.len()) != Some(1) {
            return Err(format!(
                "frame {i}: headers other than the status: {answer}"
            ));
        }
    }
    let _ = socket.close(None);
    // Drain until the server's close (or a read error): the server saw it.
    for _ in 0..64 {
        if socket.read().is_err() {
            break;
        }
    }
    Ok(())
}

/// Whether every server still answers.
pub fn check_alive() -> Result<(), String> {
    for s in servers() {
        if !s.alive() {
            return Err(format!("{} server stopped", s.store));
        }
        let ping = valid_request("GET", "/v2/ping", "p", None);
        let answer = send_http(s.http, &ping, false)?;
        if answer.as_ref().map(|a| a.status) != Some(204) {
            return Err(format!(
                "{} server does not answer ping: {answer:?}",
                s.store
            ));
        }
    }
    Ok(())
}
