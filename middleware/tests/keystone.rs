//! Behaviour against a REAL Keystone, started by `tests/keystone/setup.sh`.
//!
//! Run:
//! ```sh
//! tests/keystone/setup.sh
//! set -a; . tests/keystone/.state/env; set +a
//! cargo test -p keystone-middleware --test keystone
//! ```
//! Without `KEYSTONE_URL` the tests that need Keystone print why they are
//! skipped and pass, unless `ZAQAR_TEST_REQUIRE` names `keystone` (as
//! run_tests.sh sets it): then they fail. The unreachable-Keystone test
//! needs none and always runs.

use std::io::Write;
use std::time::Duration;

use warp::Filter;

use keystone_middleware::{
    authenticate, AuthError, AuthRejection, AuthTokenConfig, Identity, UnauthorizedReason,
    UnavailableReason, Validator,
};
use serde_json::json;

/// What setup.sh wrote to its env file.
struct Env {
    url: String,
    service_user: String,
    service_password: String,
    admin_password: String,
    alice_password: String,
    bob_password: String,
    proj_a_id: String,
    proj_b_id: String,
    service_project_id: String,
}

fn env() -> Option<Env> {
    let Ok(url) = std::env::var("KEYSTONE_URL") else {
        let required = std::env::var("ZAQAR_TEST_REQUIRE").unwrap_or_default();
        assert!(
            !required.split(',').any(|r| r == "keystone"),
            "Keystone is required (ZAQAR_TEST_REQUIRE) but KEYSTONE_URL is unset"
        );
        // Straight to stderr: the test harness captures eprintln! of
        // passing tests, and this message must be seen.
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: the Keystone tests need KEYSTONE_URL. Start Keystone with \
                 tests/keystone/setup.sh, then `set -a; . tests/keystone/.state/env; set +a` \
                 and run again."
            );
        });
        return None;
    };
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| panic!("{name} unset: source the env file"))
    };
    Some(Env {
        url,
        service_user: var("KEYSTONE_SERVICE_USER"),
        service_password: var("KEYSTONE_SERVICE_PASSWORD"),
        admin_password: var("KEYSTONE_ADMIN_PASSWORD"),
        alice_password: var("KEYSTONE_ALICE_PASSWORD"),
        bob_password: var("KEYSTONE_BOB_PASSWORD"),
        proj_a_id: var("KEYSTONE_PROJ_A_ID"),
        proj_b_id: var("KEYSTONE_PROJ_B_ID"),
        service_project_id: var("KEYSTONE_SERVICE_PROJECT_ID"),
    })
}

fn config(url: &str, user: &str, password: &str, extra: &[(&str, &str)]) -> AuthTokenConfig {
    let mut options = vec![
        ("auth_url", url),
        ("www_authenticate_uri", url),
        ("auth_type", "password"),
        ("username", user),
        ("password", password),
        ("user_domain_name", "Default"),
        ("project_name", "service"),
        ("project_domain_name", "Default"),
        ("http_connect_timeout", "5"),
    ];
    options.extend_from_slice(extra);
    AuthTokenConfig::from_options(options).expect("valid config")
}

fn validator(env: &Env, extra: &[(&str, &str)]) -> Validator {
    Validator::new(config(
        &env.url,
        &env.service_user,
        &env.service_password,
        extra,
    ))
    .unwrap()
}

/// A project-scoped token for `user`, issued by Keystone.
async fn issue_token(env: &Env, user: &str, password: &str, project: &str) -> String {
    let body = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"id": "default"}}}}});
    let resp = reqwest::Client::new()
        .post(format!("{}/v3/auth/tokens?nocatalog", env.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "token for {user}");
    resp.headers()["X-Subject-Token"]
        .to_str()
        .unwrap()
        .to_owned()
}

async fn admin_token(env: &Env) -> String {
    issue_token(env, "admin", &env.admin_password, "admin").await
}

/// Sends an admin API request and checks its status.
async fn admin_call(
    env: &Env,
    admin: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> serde_json::Value {
    let mut req = reqwest::Client::new()
        .request(method.clone(), format!("{}{path}", env.url))
        .header("X-Auth-Token", admin);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    assert!(
        resp.status().is_success(),
        "{method} {path}: {}",
        resp.status()
    );
    resp.json().await.unwrap_or(serde_json::Value::Null)
}

/// Revokes `token` as its own holder (DELETE /v3/auth/tokens).
async fn revoke(env: &Env, token: &str) {
    let resp = reqwest::Client::new()
        .delete(format!("{}/v3/auth/tokens", env.url))
        .header("X-Auth-Token", token)
        .header("X-Subject-Token", token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
}

#[tokio::test]
async fn valid_token_gives_the_identity_and_is_cached() {
    let Some(env) = env() else { return };
    let v = validator(&env, &[]);
    let token = issue_token(&env, "alice", &env.alice_password, "proj-a").await;

    let who = v.validate(&token).await.expect("alice's token is valid");
    assert_eq!(who.user_name, "alice");
    assert_eq!(who.project_id.as_deref(), Some(env.proj_a_id.as_str()));
    assert_eq!(who.project_name.as_deref(), Some("proj-a"));
    assert_eq!(who.user_domain_id, "default");
    assert!(who.has_role("member"), "roles: {:?}", who.roles);
    assert!(!who.has_role("admin"));
    assert!(who.expires_at > chrono::Utc::now());

    let again = v.validate(&token).await.unwrap();
    assert_eq!(again, who);
    let stats = v.stats();
    assert_eq!(stats.keystone_validations, 1, "{stats:?}");
    assert_eq!(stats.service_token_fetches, 1, "{stats:?}");
    assert_eq!((stats.cache_misses, stats.cache_hits), (1, 1), "{stats:?}");

    let bob = issue_token(&env, "bob", &env.bob_password, "proj-b").await;
    let who = v.validate(&bob).await.unwrap();
    assert_eq!(who.project_id.as_deref(), Some(env.proj_b_id.as_str()));
    // The service token is reused for the second look-up.
    assert_eq!(v.stats().service_token_fetches, 1);
}

#[tokio::test]
async fn invalid_token_is_unauthorized_and_remembered() {
    let Some(env) = env() else { return };
    let v = validator(&env, &[]);
    let bogus = "gAAAAABnotarealtokenatallnotarealtokenatall";
    for _ in 0..2 {
        assert_eq!(
            v.validate(bogus).await,
            Err(AuthError::Unauthorized(UnauthorizedReason::InvalidToken))
        );
    }
    assert_eq!(
        v.stats().keystone_validations,
        1,
        "the second answer came from the cache"
    );
    assert_eq!(
        v.validate("").await,
        Err(AuthError::Unauthorized(UnauthorizedReason::MissingToken))
    );
    assert_eq!(
        v.validate("two words").await,
        Err(AuthError::Unauthorized(UnauthorizedReason::MalformedToken))
    );
    assert_eq!(v.stats().keystone_validations, 1);
}

#[tokio::test]
async fn revoked_token_stops_working_within_token_cache_time() {
    let Some(env) = env() else { return };
    let cache_time = Duration::from_secs(2);
    let v = validator(&env, &[("token_cache_time", "2")]);
    let token = issue_token(&env, "alice", &env.alice_password, "proj-a").await;
    v.validate(&token).await.expect("valid before revocation");
    // The cache entry was made just before validate returned.
    let validated_at = std::time::Instant::now();
    revoke(&env, &token).await;
    if validated_at.elapsed() < cache_time / 2 {
        // Still cached: this is what token_cache_time trades for speed.
        v.validate(&token).await.expect("cached answer");
    }
    loop {
        match v.validate(&token).await {
            Err(AuthError::Unauthorized(UnauthorizedReason::InvalidToken)) => break,
            Ok(_) => assert!(
                validated_at.elapsed() < cache_time + Duration::from_millis(500),
                "a revoked token still works after token_cache_time"
            ),
            Err(other) => panic!("unexpected {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(v.stats().keystone_validations, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_validations_of_one_token_make_one_keystone_call() {
    let Some(env) = env() else { return };
    let v = validator(&env, &[]);
    let token = issue_token(&env, "alice", &env.alice_password, "proj-a").await;
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let v = v.clone();
            let token = token.clone();
            tokio::spawn(async move { v.validate(&token).await })
        })
        .collect();
    for task in tasks {
        let who = task.await.unwrap().expect("valid");
        assert_eq!(who.project_id.as_deref(), Some(env.proj_a_id.as_str()));
    }
    let stats = v.stats();
    assert_eq!(stats.keystone_validations, 1, "{stats:?}");
    assert_eq!(stats.cache_misses, 1, "{stats:?}");
    assert_eq!(stats.cache_hits, 49, "{stats:?}");
    assert_eq!(stats.service_token_fetches, 1, "{stats:?}");
}

#[tokio::test]
async fn unreachable_keystone_and_uncached_token_is_unavailable() {
    // A loopback port nobody listens on: bind, note the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let v = Validator::new(config(
        &url,
        "zaqar",
        "pw",
        &[("http_request_max_retries", "2")],
    ))
    .unwrap();
    let err = v.validate("gAAAAABsometoken").await.unwrap_err();
    assert!(
        matches!(
            err,
            AuthError::Unavailable(UnavailableReason::Unreachable { .. })
        ),
        "{err:?}"
    );
    assert_eq!(err.status(), 503);
    // One attempt and two retries; the failure itself is not cached.
    assert_eq!(v.stats().service_token_fetches, 3);
    assert!(v.validate("gAAAAABsometoken").await.is_err());
    assert_eq!(v.stats().service_token_fetches, 6);
}

#[tokio::test]
async fn wrong_service_password_is_unavailable_not_unauthorized() {
    let Some(env) = env() else { return };
    let v = Validator::new(config(&env.url, &env.service_user, "wrong-password", &[])).unwrap();
    let token = issue_token(&env, "alice", &env.alice_password, "proj-a").await;
    assert_eq!(
        v.validate(&token).await,
        Err(AuthError::Unavailable(
            UnavailableReason::ServiceAuthRejected { status: 401 }
        ))
    );
}

#[tokio::test]
async fn rejected_service_token_is_renewed_once() {
    let Some(env) = env() else { return };
    // A service user of this test's own, so revoking its tokens disturbs no
    // other test.
    let admin = admin_token(&env).await;
    let name = format!("mw-renew-{}", std::process::id());
    let password = "renew-secret";
    let created = admin_call(
        &env,
        &admin,
        reqwest::Method::POST,
        "/v3/users",
        Some(json!({"user": {"name": name, "domain_id": "default", "password": password}})),
    )
    .await;
    let user_id = created["user"]["id"].as_str().unwrap().to_owned();
    let roles = admin_call(
        &env,
        &admin,
        reqwest::Method::GET,
        "/v3/roles?name=service",
        None,
    )
    .await;
    let role_id = roles["roles"][0]["id"].as_str().unwrap().to_owned();
    admin_call(
        &env,
        &admin,
        reqwest::Method::PUT,
        &format!(
            "/v3/projects/{}/users/{user_id}/roles/{role_id}",
            env.service_project_id
        ),
        None,
    )
    .await;

    let v = Validator::new(config(&env.url, &name, password, &[])).unwrap();
    let first = issue_token(&env, "alice", &env.alice_password, "proj-a").await;
    v.validate(&first).await.expect("valid");
    assert_eq!(v.stats().service_token_fetches, 1);

    // Disabling a user revokes its tokens; Keystone compares issue times to
    // the second, so wait before the renewal issues a new one.
    let user_path = format!("/v3/users/{user_id}");
    for enabled in [false, true] {
        admin_call(
            &env,
            &admin,
            reqwest::Method::PATCH,
            &user_path,
            Some(json!({"user": {"enabled": enabled}})),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let second = issue_token(&env, "bob", &env.bob_password, "proj-b").await;
    let who = v.validate(&second).await.expect("renewed and validated");
    assert_eq!(who.project_id.as_deref(), Some(env.proj_b_id.as_str()));
    let stats = v.stats();
    assert_eq!(stats.service_token_fetches, 2, "{stats:?}");
    assert_eq!(
        stats.keystone_validations, 3,
        "one 401, one retry: {stats:?}"
    );

    admin_call(&env, &admin, reqwest::Method::DELETE, &user_path, None).await;
}

#[tokio::test]
async fn catalog_is_fetched_on_demand() {
    let Some(env) = env() else { return };
    let v = validator(&env, &[]);
    let token = issue_token(&env, "alice", &env.alice_password, "proj-a").await;
    let catalog = v.catalog(&token).await.unwrap();
    let identity = catalog
        .iter()
        .find(|s| s.service_type == "identity")
        .expect("identity service in the catalog");
    assert!(identity
        .endpoints
        .iter()
        .any(|e| e.url.starts_with(&env.url)));
    assert_eq!(v.stats().catalog_fetches, 1);
    assert_eq!(
        v.catalog("gAAAAABbogus").await,
        Err(AuthError::Unauthorized(UnauthorizedReason::InvalidToken))
    );
}

#[tokio::test]
async fn warp_filter_extracts_identity_or_rejects() {
    let Some(env) = env() else { return };
    let v = validator(&env, &[]);
    let route = warp::any()
        .and(authenticate(v.clone()))
        .map(|who: Identity| who.project_id.unwrap_or_default());
    let token = issue_token(&env, "alice", &env.alice_password, "proj-a").await;

    let project = warp::test::request()
        .header("X-Auth-Token", &token)
        .header("X-Project-Id", &env.proj_b_id)
        .filter(&route)
        .await
        .expect("authenticated");
    assert_eq!(
        project, env.proj_a_id,
        "X-Project-Id cannot override the token"
    );

    for request in [
        warp::test::request(),
        warp::test::request().header("X-Auth-Token", "gAAAAABbogus"),
    ] {
        let rejection = request.filter(&route).await.unwrap_err();
        let auth = rejection.find::<AuthRejection>().expect("an AuthRejection");
        assert_eq!(auth.status(), 401);
        assert_eq!(
            auth.www_authenticate(),
            Some(format!("Keystone uri=\"{}\"", env.url).as_str())
        );
    }
}

#[tokio::test]
async fn cached_validation_costs_microseconds() {
    let Some(env) = env() else { return };
    let v = validator(&env, &[]);
    let token = issue_token(&env, "alice", &env.alice_password, "proj-a").await;
    v.validate(&token).await.unwrap();
    const ROUNDS: u32 = 20_000;
    let started = std::time::Instant::now();
    for _ in 0..ROUNDS {
        v.validate(&token).await.unwrap();
    }
    let each = started.elapsed() / ROUNDS;
    let _ = writeln!(std::io::stderr(), "cached validation: {each:?} per call");
    assert_eq!(v.stats().keystone_validations, 1);
    // Generous: debug builds and a loaded CI machine. Release is ~1-2 µs.
    assert!(each < Duration::from_micros(200), "{each:?}");
}
