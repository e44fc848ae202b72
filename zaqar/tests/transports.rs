//! Both transports in-process: a whole server per test on port 0 (embedded
//! store in a temporary directory), driven over real sockets, and stopped
//! through its shutdown future.
//!
//! These tests pin what the one operation model promises: the same request
//! gets the same answer over HTTP and WebSocket, including the cases where
//! the transports once disagreed.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use zaqar::config::Config;

const CLIENT: &str = "3381af92-2b9e-11e3-b191-71861300734c";

/// A running server and how to stop it.
struct TestServer {
    http: String,
    ws: String,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    async fn start(extra: &str) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[drivers:message_store:sqlite]\nuri = {}\n{extra}",
            dir.path().join("z.db").display()
        );
        let config = Arc::new(Config::parse(&text).unwrap());
        let (api, hub) = zaqar::server::build(config).unwrap();
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ws = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http_url = format!("http://{}", http.local_addr().unwrap());
        let ws_url = format!("ws://{}/", ws.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            zaqar::server::serve_all(api, Some(http), hub.map(|h| (ws, h)), shutdown)
                .await
                .unwrap();
        });
        TestServer {
            http: http_url,
            ws: ws_url,
            stop: Some(stop),
            done,
            _dir: dir,
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(30), &mut self.done)
            .await
            .expect("the server stops")
            .unwrap();
    }

    fn http(&self, method: reqwest::Method, path: &str, project: &str) -> reqwest::RequestBuilder {
        reqwest::Client::new()
            .request(method, format!("{}{path}", self.http))
            .header("Client-ID", CLIENT)
            .header("X-Project-ID", project)
    }

    async fn ws(&self) -> Ws {
        let (socket, _) = tokio_tungstenite::connect_async(&self.ws).await.unwrap();
        Ws(socket)
    }
}

struct Ws(
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
);

impl Ws {
    /// Sends one frame and returns (status, body, headers) of its answer.
    async fn call(&mut self, action: &str, headers: Value, body: Value) -> (u16, Value, Value) {
        let mut h = json!({"Client-ID": CLIENT});
        for (k, v) in headers.as_object().unwrap() {
            h[k] = v.clone();
        }
        let frame = json!({"action": action, "headers": h, "body": body});
        self.0.send(Message::text(frame.to_string())).await.unwrap();
        loop {
            let msg = self.0.next().await.unwrap().unwrap();
            if let Message::Text(text) = msg {
                let doc: Value = serde_json::from_str(&text).unwrap();
                let status = doc["headers"]["status"].as_u64().unwrap() as u16;
                return (status, doc["body"].clone(), doc["headers"].clone());
            }
        }
    }
}

fn project() -> String {
    format!("p-{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn the_same_post_is_judged_alike_on_both_transports() {
    let srv = TestServer::start("[transport]\nmax_messages_post_size = 300\n").await;
    let p = project();
    let mut ws = srv.ws().await;
    // A body python-zaqarclient would send as 301 bytes over HTTP.
    let body_for = |n: usize| json!({"messages": [{"body": "x".repeat(n), "ttl": 60}]});
    let python_len = |v: &Value| {
        // json.dumps with its default ", " and ": " separators
        v.to_string().len() + 4
    };
    let mut n = 200;
    while python_len(&body_for(n + 1)) <= 300 {
        n += 1;
    }
    for (size, accepted) in [(n, true), (n + 1, false)] {
        let doc = body_for(size);
        let text = serde_json::to_string(&doc)
            .unwrap()
            .replace("\":", "\": ")
            .replace(",\"", ", \"");
        assert_eq!(text.len(), python_len(&doc));
        let http = srv
            .http(reqwest::Method::POST, "/v2/queues/q/messages", &p)
            .header("Content-Type", "application/json")
            .body(text)
            .send()
            .await
            .unwrap();
        let (status, body, _) = ws
            .call(
                "message_post",
                json!({"X-Project-ID": p}),
                json!({"queue_name": "q", "messages": doc["messages"]}),
            )
            .await;
        assert_eq!(http.status().as_u16(), status, "size {size}: {body}");
        assert_eq!(status == 201, accepted, "size {size}: {body}");
    }
    srv.stop().await;
}

/// Defect (found by the fuzz harness): a subscription whose options were
/// larger than the body cap was refused over HTTP (the transport stops
/// reading at the cap) but stored when a WebSocket frame carried it, and
/// then listed in every answer about the queue's subscriptions.
#[tokio::test]
async fn a_body_over_the_cap_is_refused_on_both_transports() {
    let srv =
        TestServer::start("[notification]\nallowed_subscriber_networks = 127.0.0.1/32\n").await;
    let p = project();
    let options = json!({"note": "x".repeat(300_000)});
    let http = srv
        .http(reqwest::Method::POST, "/v2/queues/q/subscriptions", &p)
        .json(&json!({"subscriber": "http://127.0.0.1:1/", "ttl": 3600, "options": options}))
        .send()
        .await
        .unwrap();
    let (status, body, _) = srv
        .ws()
        .await
        .call(
            "subscription_create",
            json!({"X-Project-ID": p}),
            json!({"queue_name": "q", "subscriber": "http://127.0.0.1:1/", "ttl": 3600, "options": options}),
        )
        .await;
    assert_eq!((http.status().as_u16(), status), (400, 400), "{body}");
    srv.stop().await;
}

#[tokio::test]
async fn health_exists_only_in_admin_mode_on_both_transports() {
    for (admin_mode, expected) in [("false", 404), ("true", 200)] {
        let srv = TestServer::start(&format!("[DEFAULT]\nadmin_mode = {admin_mode}\n")).await;
        let p = project();
        let http = srv
            .http(reqwest::Method::GET, "/v2/health", &p)
            .header("X-Roles", "admin")
            .send()
            .await
            .unwrap();
        let (status, _, _) = srv
            .ws()
            .await
            .call(
                "check_node_health",
                json!({"X-Project-ID": p, "X-Roles": "admin"}),
                json!({}),
            )
            .await;
        assert_eq!((http.status().as_u16(), status), (expected, expected));
        srv.stop().await;
    }
}

#[tokio::test]
async fn a_signature_is_verified_on_both_transports_without_keystone() {
    let srv = TestServer::start("[signed_url]\nsecret_key = k\n").await;
    let p = project();
    let bad = "0".repeat(64);
    let http = srv
        .http(reqwest::Method::GET, "/v2/queues/q/messages", &p)
        .header("URL-Signature", &bad)
        .header("URL-Methods", "GET")
        .header("URL-Paths", "/v2/queues/q/messages")
        .header("URL-Expires", "2099-01-01T00:00:00")
        .send()
        .await
        .unwrap();
    let (status, _, _) = srv
        .ws()
        .await
        .call(
            "message_list",
            json!({"X-Project-ID": p, "URL-Signature": bad, "URL-Methods": ["GET"],
                   "URL-Paths": ["/v2/queues/q/messages"], "URL-Expires": "2099-01-01T00:00:00"}),
            json!({"queue_name": "q"}),
        )
        .await;
    assert_eq!((http.status().as_u16(), status), (404, 404));
    srv.stop().await;
}

#[tokio::test]
async fn every_answer_carries_a_request_id_and_subscribing_creates_the_queue() {
    let srv = TestServer::start("").await;
    let p = project();
    let mut ws = srv.ws().await;
    let (status, body, headers) = ws
        .call(
            "subscription_create",
            json!({"X-Project-ID": p}),
            json!({"queue_name": "fresh", "ttl": 59}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    // The reference's response headers: the status alone.
    assert_eq!(headers, json!({"status": 400}));
    let (status, body, _) = ws
        .call(
            "subscription_create",
            json!({"X-Project-ID": p}),
            json!({"queue_name": "fresh"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (_, sub, _) = ws
        .call(
            "subscription_get",
            json!({"X-Project-ID": p}),
            json!({"queue_name": "fresh", "subscription_id": body["subscription_id"]}),
        )
        .await;
    assert_eq!(sub["ttl"], 3600, "the default subscription TTL: {sub}");
    let queues: Value = srv
        .http(reqwest::Method::GET, "/v2/queues", &p)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(queues["queues"][0]["name"], "fresh");
    // HTTP without a subscriber is a 400, and creates the queue too (reference)
    let http = srv
        .http(reqwest::Method::POST, "/v2/queues/other/subscriptions", &p)
        .json(&json!({"ttl": 600}))
        .send()
        .await
        .unwrap();
    assert_eq!(http.status().as_u16(), 400);
    srv.stop().await;
}

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish() {
    let srv = TestServer::start("").await;
    let p = project();
    // A slow client: the head is sent, the body trickles in after shutdown.
    let addr = srv.http.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let body = r#"{"messages": [{"body": 1, "ttl": 60}]}"#;
    let head = format!(
        "POST /v2/queues/q/messages HTTP/1.1\r\nHost: x\r\nClient-ID: {CLIENT}\r\nX-Project-ID: {p}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body.as_bytes()[..5]).await.unwrap();
    let stopping = tokio::spawn(srv.stop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!stopping.is_finished(), "shutdown waits for the request");
    stream.write_all(&body.as_bytes()[5..]).await.unwrap();
    let mut answer = vec![0u8; 1024];
    let n = stream.read(&mut answer).await.unwrap();
    assert!(
        answer[..n].starts_with(b"HTTP/1.1 201"),
        "{}",
        String::from_utf8_lossy(&answer[..n])
    );
    stopping.await.unwrap();
}
