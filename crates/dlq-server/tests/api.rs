//! The HTTP API against a real SQLite store filled by the MarketLag
//! generator and the file processor: every route, its access rules, the
//! CSRF rule, masking, audit entries and replays.

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use dlq_core::envelope::DeadLetter;
use dlq_core::process::{self, Handler, Input, ProcessConfig};
use dlq_core::replay::{self, FileFormat, FileTarget, ReplayOptions, ReplayReport};
use dlq_core::store::{DlqStore as _, Entry, Status};
use dlq_core::{Failure, RetryPolicy};
use dlq_marketlag::{GeneratorConfig, Limits, Pipeline};
use dlq_server::routes::{Access, Method, ROUTES};
use dlq_server::{ReplayRunner, Server, SharedStore, config};
use dlq_sqlite::{SqliteOptions, SqliteStore};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt as _;

const VIEWER: &str = "viewer-token-for-the-api-tests-01";
const OPERATOR: &str = "operator-token-for-the-api-tests-01";
const HTML: &str = "<script>alert('pwned')</script><img src=x onerror=alert(1)>";
const HTML_ID: &str = "html-1";
const RSS: &str = "dlq.rss.events";
const PRICES: &str = "dlq.polymarket.price_hourly";

/// Validates records with the MarketLag validator; the processor's handler.
struct Validate(Pipeline);

impl Handler for Validate {
    fn handle(&mut self, payload: &[u8], _attempt: u32) -> Result<Vec<u8>, Failure> {
        dlq_marketlag::validate(self.0, payload, &Limits::default())
            .map(|_| payload.to_vec())
            .map_err(|e| Failure::permanent("validate", e.class, e.message))
    }
}

/// Replays to `file:PATH` targets, as the CLI does; `panic:` stands for a
/// replay that hits a bug (it panics after its first progress report).
struct FileRunner;

impl ReplayRunner<SqliteStore> for FileRunner {
    fn check_target(&self, spec: &str) -> Result<(), String> {
        if spec == "panic:" {
            return Ok(());
        }
        spec.strip_prefix("file:")
            .map(|_| ())
            .ok_or_else(|| format!("unsupported target {spec:?}"))
    }

    fn run(
        &self,
        store: &SharedStore<SqliteStore>,
        spec: &str,
        _dlq: &str,
        options: &ReplayOptions,
        progress: &mut dyn FnMut(&ReplayReport),
    ) -> Result<ReplayReport, String> {
        if spec == "panic:" {
            progress(&ReplayReport {
                selected: 1,
                ..ReplayReport::default()
            });
            panic!("cannot convert float seconds to Duration: value is either too big or NaN");
        }
        let path = spec.strip_prefix("file:").ok_or("not a file target")?;
        let mut store = store.clone();
        let mut target = FileTarget::open(Path::new(path), FileFormat::Payload, &mut store)
            .map_err(|e| e.to_string())?;
        replay::run(&mut store, &mut target, options, Some(progress)).map_err(|e| e.to_string())
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    server: Server<SqliteStore>,
    router: Router,
}

impl Fixture {
    async fn new() -> Fixture {
        Fixture::with_serve_config("").await
    }

    /// A fixture whose `[serve]` section also has `extra` (TOML lines).
    async fn with_serve_config(extra: &str) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store =
            SqliteStore::open(dir.path().join("dlq.db"), SqliteOptions::default()).expect("store");
        for (i, pipeline) in Pipeline::ALL.into_iter().enumerate() {
            let input = dir.path().join(format!("{}.ndjson", pipeline.topic()));
            let mut text = Vec::new();
            for r in dlq_marketlag::generate(&GeneratorConfig::new(pipeline, 400, 7 + i as u64)) {
                text.extend_from_slice(&r.line);
                text.push(b'\n');
            }
            std::fs::write(&input, text).expect("input");
            let mut cfg = ProcessConfig::new(
                Input::File(input),
                dir.path().join(format!("{}.out", pipeline.topic())),
                pipeline.dlq_topic(),
                pipeline.topic(),
            );
            cfg.retry = RetryPolicy {
                max_attempts: 1,
                ..RetryPolicy::default()
            };
            let s = process::run(&cfg, &mut Validate(pipeline), &mut store, None).expect("process");
            assert!(s.dead_lettered > 10, "{pipeline:?}: {s:?}");
        }
        // A payload that is HTML, with an error message quoting it.
        let failure = Failure::permanent(
            "validate",
            "decode.malformed_json",
            format!("not JSON: {HTML}"),
        );
        store
            .append(&[Entry {
                dlq: RSS.into(),
                letter: DeadLetter::new(HTML_ID, HTML.as_bytes().to_vec(), &failure),
                status: Status::Pending,
            }])
            .expect("append");
        let text = format!(
            "[serve]\naudit_log = \"audit.jsonl\"\n{extra}\n[serve.replay_targets]\n\
             out = \"file:{}\"\nboom = \"panic:\"\nbroken = \"file:{}\"\n",
            dir.path().join("replayed.ndjson").display(),
            dir.path().join("no-such-dir/replayed.ndjson").display()
        );
        let env = |name: &str| match name {
            config::VIEWER_TOKEN_ENV => Some(VIEWER.to_owned()),
            config::OPERATOR_TOKEN_ENV => Some(OPERATOR.to_owned()),
            _ => None,
        };
        let runner = Arc::new(FileRunner);
        let loaded =
            config::load_str(&text, dir.path(), &env, &|s| runner.check_target(s)).expect("config");
        let server = Server::new(store, loaded.config, loaded.tokens, runner).expect("server");
        server.sample_now().await;
        let router = server.router();
        Fixture {
            dir,
            server,
            router,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Sends `req`, as a browser on the server's own page would: with
    /// `Host: 127.0.0.1:8080` (the default listen address) unless it has
    /// a Host.
    async fn send(&self, mut req: Request<Body>) -> Reply {
        if !req.headers().contains_key(header::HOST) {
            req.headers_mut()
                .insert(header::HOST, "127.0.0.1:8080".parse().expect("host"));
        }
        self.send_as_is(req).await
    }

    async fn send_as_is(&self, req: Request<Body>) -> Reply {
        let resp = self.router.clone().oneshot(req).await.expect("response");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        Reply {
            status,
            headers,
            body: String::from_utf8(body.to_vec()).expect("utf-8 body"),
        }
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        let mut req = Request::get(path);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        self.send(req.body(Body::empty()).expect("request")).await
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        let mut req = Request::post(path)
            .header(header::CONTENT_TYPE, "application/json")
            .header("x-dlq-csrf", "1");
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        self.send(req.body(Body::from(body.to_string())).expect("request"))
            .await
    }

    async fn pending(&self, dlq: &str) -> u64 {
        let r = self.get(&format!("/api/dlqs/{dlq}"), Some(VIEWER)).await;
        r.ok()["pending"].as_u64().expect("pending")
    }

    fn audit_entries(&self) -> Vec<Value> {
        std::fs::read_to_string(self.path("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
            .collect()
    }

    async fn wait_for_job(&self, id: &str) -> Value {
        for _ in 0..200 {
            let job = self
                .get(&format!("/api/replays/{id}"), Some(VIEWER))
                .await
                .ok()["job"]
                .clone();
            if job["done"] == json!(true) {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("replay {id} did not finish");
    }
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    fn ok(&self) -> Value {
        assert_eq!(self.status, StatusCode::OK, "{}", self.body);
        self.json()
    }

    fn error(&self, status: StatusCode) -> String {
        assert_eq!(self.status, status, "{}", self.body);
        self.json()["error"]["message"]
            .as_str()
            .expect("error message")
            .to_owned()
    }
}

/// A concrete path for a route of the table.
fn concrete(path: &str) -> String {
    path.replace("{dlq}", RSS)
        .replace("{id}", HTML_ID)
        .replace("{job}", "0123")
        .replace("{name}", "app.js")
}

fn post_body(path: &str) -> Value {
    match path {
        "/api/replays" | "/api/replays/preview" => {
            json!({"dlq": RSS, "target": "out", "filter": "id == \"nothing\""})
        }
        _ => json!({"ids": ["nothing"]}),
    }
}

#[tokio::test]
async fn every_api_route_needs_a_valid_token() {
    let f = Fixture::new().await;
    for r in ROUTES.iter().filter(|r| r.access != Access::Public) {
        let path = concrete(r.path);
        for token in [None, Some("not-a-token-at-all-0000000"), Some("")] {
            let reply = match r.method {
                Method::Get => f.get(&path, token).await,
                Method::Post => f.post(&path, token, post_body(r.path)).await,
            };
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{r:?} {token:?}");
            assert!(reply.headers.contains_key(header::WWW_AUTHENTICATE));
        }
    }
    // The public routes are the static files only.
    assert_eq!(f.get("/", None).await.status, StatusCode::OK);
    assert_eq!(f.get("/assets/app.js", None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn viewers_read_but_cannot_reveal_replay_discard_or_audit() {
    let f = Fixture::new().await;
    let before = f.pending(RSS).await;
    for r in ROUTES {
        let path = concrete(r.path);
        let reply = match r.method {
            Method::Get => f.get(&path, Some(VIEWER)).await,
            Method::Post => f.post(&path, Some(VIEWER), post_body(r.path)).await,
        };
        match r.access {
            Access::Operator => {
                assert_eq!(reply.status, StatusCode::FORBIDDEN, "{r:?}: {}", reply.body)
            }
            _ => assert_ne!(reply.status, StatusCode::FORBIDDEN, "{r:?}"),
        }
    }
    // A viewer's replay of everything changes nothing.
    let reply = f
        .post(
            "/api/replays",
            Some(VIEWER),
            json!({"dlq": RSS, "target": "out"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(f.pending(RSS).await, before);
    assert!(
        f.get("/api/replays", Some(VIEWER)).await.ok()["jobs"]
            .as_array()
            .expect("jobs")
            .is_empty()
    );
    assert!(!f.path("replayed.ndjson").exists());
    assert!(f.audit_entries().is_empty());
}

#[tokio::test]
async fn posts_need_the_csrf_header_and_a_same_origin() {
    let f = Fixture::new().await;
    for r in ROUTES.iter().filter(|r| r.method == Method::Post) {
        let path = concrete(r.path);
        let no_header = Request::post(&path)
            .header(header::AUTHORIZATION, format!("Bearer {OPERATOR}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(post_body(r.path).to_string()))
            .expect("request");
        let reply = f.send(no_header).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{r:?}");
        assert_eq!(reply.json()["error"]["code"], "csrf");
        let foreign = Request::post(&path)
            .header(header::AUTHORIZATION, format!("Bearer {OPERATOR}"))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::HOST, "127.0.0.1:8080")
            .header(header::ORIGIN, "http://attacker.test")
            .header("x-dlq-csrf", "1")
            .body(Body::from(post_body(r.path).to_string()))
            .expect("request");
        let reply = f.send(foreign).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{r:?}");
    }
    // Same origin is fine.
    let own = Request::post(format!("/api/dlqs/{RSS}/records/{HTML_ID}/reveal"))
        .header(header::AUTHORIZATION, format!("Bearer {OPERATOR}"))
        .header(header::HOST, "127.0.0.1:8080")
        .header(header::ORIGIN, "http://127.0.0.1:8080")
        .header("x-dlq-csrf", "1")
        .body(Body::empty())
        .expect("request");
    assert_eq!(f.send(own).await.status, StatusCode::OK);
    // GET never changes state, so it needs no CSRF header; POST-only
    // routes refuse GET.
    let reply = f
        .get(&format!("/api/dlqs/{RSS}/records/discard"), Some(OPERATOR))
        .await;
    assert_ne!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn dlqs_show_sizes_and_unknown_ones_are_404() {
    let f = Fixture::new().await;
    let all = f.get("/api/dlqs", Some(VIEWER)).await.ok();
    let rows = all["dlqs"].as_array().expect("dlqs");
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["dlq"].as_str().expect("name"))
        .collect();
    assert_eq!(names, vec![PRICES, RSS]);
    for r in rows {
        assert!(r["pending"].as_u64().expect("pending") > 0);
        assert_eq!(r["pending"], r["total"]);
        assert!(r["oldest_pending_age_seconds"].is_i64());
    }
    let one = f
        .get(&format!("/api/dlqs/{PRICES}"), Some(VIEWER))
        .await
        .ok();
    assert_eq!(one["dlq"], PRICES);
    f.get("/api/dlqs/dlq.nope", Some(VIEWER))
        .await
        .error(StatusCode::NOT_FOUND);
    for sub in ["groups", "records", "history"] {
        f.get(&format!("/api/dlqs/dlq.nope/{sub}"), Some(VIEWER))
            .await
            .error(StatusCode::NOT_FOUND);
    }
    f.get(&format!("/api/dlqs/{RSS}/records/nope"), Some(VIEWER))
        .await
        .error(StatusCode::NOT_FOUND);
    let health = f.get("/api/health", Some(VIEWER)).await.ok();
    assert_eq!(health["status"], "ok");
    f.get("/api/nothing", Some(VIEWER))
        .await
        .error(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn groups_have_the_shape_of_dlq_analyze_and_add_up_to_pending() {
    let f = Fixture::new().await;
    let reply = f
        .get(&format!("/api/dlqs/{PRICES}/groups"), Some(VIEWER))
        .await
        .ok();
    assert_eq!(reply["dlqs"], json!([PRICES]));
    let groups = reply["groups"].as_array().expect("groups");
    assert!(groups.len() >= 3, "{groups:?}");
    for key in [
        "fingerprint",
        "dlq",
        "source_topic",
        "stage",
        "error_class",
        "template",
        "count",
        "first_seen",
        "last_seen",
        "timeline",
        "verdict",
        "verdict_reason",
        "sample_ids",
        "fields",
        "replay_filter",
    ] {
        assert!(groups[0].get(key).is_some(), "groups lack {key}");
    }
    let sum: u64 = groups
        .iter()
        .map(|g| g["count"].as_u64().expect("count"))
        .sum();
    assert_eq!(sum, f.pending(PRICES).await);
    let top = f
        .get(&format!("/api/dlqs/{PRICES}/groups?top=1"), Some(VIEWER))
        .await
        .ok();
    assert_eq!(top["groups"].as_array().expect("groups").len(), 1);
}

#[tokio::test]
async fn records_are_masked_until_an_operator_reveals_one_and_that_is_audited() {
    let f = Fixture::new().await;
    let page = f
        .get(&format!("/api/dlqs/{PRICES}/records?limit=7"), Some(VIEWER))
        .await
        .ok();
    let records = page["records"].as_array().expect("records");
    assert_eq!(records.len(), 7);
    let first = &records[0];
    assert_eq!(first["payload"]["masked"], true);
    assert!(first["payload"]["bytes"].as_u64().expect("bytes") > 0);
    assert_eq!(
        first["payload"]["sha256_prefix"]
            .as_str()
            .expect("prefix")
            .len(),
        12
    );
    assert!(first.get("payload_text").is_none());
    // The next page continues after this one.
    let cursor = page["next_cursor"].as_str().expect("cursor");
    let next = f
        .get(
            &format!("/api/dlqs/{PRICES}/records?limit=7&cursor={cursor}"),
            Some(VIEWER),
        )
        .await
        .ok();
    assert_ne!(next["records"][0]["id"], first["id"]);

    // Invalid UTF-8 is binary, even when it looks like JSON around it.
    let binary = f
        .get(
            &format!(
                "/api/dlqs/{PRICES}/records?filter=error_class%20%3D%3D%20%22decode.invalid_utf8%22"
            ),
            Some(VIEWER),
        )
        .await
        .ok();
    let kinds: Vec<&Value> = binary["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| &r["payload"]["kind"])
        .collect();
    assert!(
        !kinds.is_empty() && kinds.iter().all(|k| **k == "binary"),
        "{kinds:?}"
    );

    let id = first["id"].as_str().expect("id");
    let path = format!("/api/dlqs/{PRICES}/records/{}", urlencode(id));
    let one = f.get(&path, Some(VIEWER)).await.ok();
    assert_eq!(one["record"]["id"], id);
    assert_eq!(one["record"]["payload"]["masked"], true);
    let revealed = f
        .post(&format!("{path}/reveal"), Some(OPERATOR), json!({}))
        .await
        .ok();
    assert_eq!(revealed["bytes"], first["payload"]["bytes"]);
    let prefix = first["payload"]["sha256_prefix"].as_str().expect("prefix");
    assert!(
        revealed["sha256"]
            .as_str()
            .expect("sha256")
            .starts_with(prefix)
    );
    // Text as text; other bytes (a generated invalid-UTF-8 record) as base64.
    let text = match revealed["payload"]["encoding"].as_str() {
        Some("text") => revealed["payload"]["text"].as_str().expect("text"),
        _ => revealed["payload"]["base64"].as_str().expect("base64"),
    };
    assert!(!text.is_empty());
    let audit = f.audit_entries();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0]["action"], "reveal");
    assert_eq!(
        audit[0]["actor"],
        json!({"role": "operator", "label": "env:DLQ_OPERATOR_TOKEN"})
    );
    assert_eq!(audit[0]["details"]["id"], id);
    let raw = std::fs::read_to_string(f.path("audit.jsonl")).expect("audit");
    assert!(
        !raw.contains(OPERATOR) && !raw.contains(text),
        "audit holds a secret: {raw}"
    );
    let listed = f.get("/api/audit", Some(OPERATOR)).await.ok();
    assert_eq!(listed["entries"][0]["action"], "reveal");
}

#[tokio::test]
async fn html_payloads_never_leave_the_server_unescaped() {
    let f = Fixture::new().await;
    let mut bodies = Vec::new();
    for path in ["/", "/assets/app.js", "/assets/app.css"] {
        let r = f.get(path, Some(OPERATOR)).await;
        assert_eq!(r.status, StatusCode::OK);
        bodies.push((path.to_owned(), r.body));
    }
    let record = format!("/api/dlqs/{RSS}/records/{HTML_ID}");
    for path in [
        format!("/api/dlqs/{RSS}/records?filter=id%20%3D%3D%20%22{HTML_ID}%22"),
        record.clone(),
        format!("/api/dlqs/{RSS}/groups"),
    ] {
        let r = f.get(&path, Some(OPERATOR)).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
        assert_eq!(r.headers[header::CONTENT_TYPE], "application/json");
        bodies.push((path, r.body));
    }
    let revealed = f
        .post(&format!("{record}/reveal"), Some(OPERATOR), json!({}))
        .await;
    assert_eq!(
        revealed.ok()["payload"]["text"],
        HTML,
        "the value itself is intact"
    );
    let preview = f
        .post(
            "/api/replays/preview",
            Some(OPERATOR),
            json!({"dlq": RSS, "target": "out", "filter": format!("id == \"{HTML_ID}\"")}),
        )
        .await;
    assert_eq!(preview.ok()["samples"][0]["before"], HTML);
    bodies.push(("reveal".into(), revealed.body));
    bodies.push(("preview".into(), preview.body));
    for (path, body) in &bodies {
        assert!(
            !body.contains("<script>alert"),
            "{path} returns the payload unescaped"
        );
        assert!(
            !body.contains("<img src=x"),
            "{path} returns the payload unescaped"
        );
    }
    let one = f.get(&record, Some(VIEWER)).await.ok();
    assert_eq!(one["record"]["error"], format!("not JSON: {HTML}"));
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let f = Fixture::new().await;
    for (path, token) in [
        ("/", None),
        ("/assets/uPlot.iife.min.js", None),
        ("/api/dlqs", Some(VIEWER)),
        ("/api/dlqs", None),
        ("/metrics", Some(VIEWER)),
        ("/nowhere", None),
    ] {
        let r = f.get(path, token).await;
        let csp = r.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .expect("csp");
        assert!(csp.contains("default-src 'self'") && csp.contains("script-src 'self'"));
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
        assert_eq!(r.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(r.headers[header::REFERRER_POLICY], "no-referrer");
        assert_eq!(r.headers[header::X_FRAME_OPTIONS], "DENY");
        assert!(!r.headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
    }
    let index = f.get("/", None).await.body;
    assert!(
        !index.contains("<script>") && !index.contains("style="),
        "inline script or style"
    );
}

#[tokio::test]
async fn bad_input_is_a_400_with_the_reason() {
    let f = Fixture::new().await;
    let msg = f
        .get(
            &format!("/api/dlqs/{RSS}/records?filter=error_class%20%3D%3D"),
            Some(VIEWER),
        )
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(msg.contains("invalid filter at character"), "{msg}");
    f.get(&format!("/api/dlqs/{RSS}/records?limit=0"), Some(VIEWER))
        .await
        .error(StatusCode::BAD_REQUEST);
    f.get(&format!("/api/dlqs/{RSS}/records?colour=red"), Some(VIEWER))
        .await
        .error(StatusCode::BAD_REQUEST);
    f.get(
        &format!("/api/dlqs/{RSS}/history?since=yesterday"),
        Some(VIEWER),
    )
    .await
    .error(StatusCode::BAD_REQUEST);
    // axum's own rejections come in the same JSON shape.
    f.get(&format!("/api/dlqs/{RSS}/records?limit=%ZZ"), Some(VIEWER))
        .await
        .error(StatusCode::BAD_REQUEST);
    f.get(&format!("/api/dlqs/{RSS}/records/discard"), Some(OPERATOR))
        .await
        .error(StatusCode::METHOD_NOT_ALLOWED);
    for (body, needle) in [
        (
            json!({"dlq": RSS, "target": "/etc/passwd"}),
            "not an allow-listed replay target",
        ),
        (
            json!({"dlq": RSS, "target": "out", "to": "file:/tmp/x"}),
            "unknown field",
        ),
        (
            json!({"dlq": RSS, "target": "out", "fix": ".price |="}),
            "fix:",
        ),
        (
            json!({"dlq": RSS, "target": "out", "fingerprint": "x\" or true"}),
            "fingerprint",
        ),
        (json!({"dlq": RSS, "target": "out", "rate": -1}), "rate"),
    ] {
        let msg = f
            .post("/api/replays/preview", Some(OPERATOR), body.clone())
            .await
            .error(StatusCode::BAD_REQUEST);
        assert!(msg.contains(needle), "{body}: {msg}");
    }
    f.post(
        "/api/replays",
        Some(OPERATOR),
        json!({"dlq": "dlq.nope", "target": "out"}),
    )
    .await
    .error(StatusCode::NOT_FOUND);
    let msg = f
        .post(
            &format!("/api/dlqs/{RSS}/records/discard"),
            Some(OPERATOR),
            json!({}),
        )
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(msg.contains("say what to discard"), "{msg}");
    let not_json = Request::post("/api/replays/preview")
        .header(header::AUTHORIZATION, format!("Bearer {OPERATOR}"))
        .header("x-dlq-csrf", "1")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("dlq=x"))
        .expect("request");
    assert_eq!(
        f.send(not_json).await.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    assert!(
        f.audit_entries().is_empty(),
        "nothing was done, nothing audited"
    );
}

#[tokio::test]
async fn a_group_is_previewed_replayed_in_the_background_and_audited() {
    let f = Fixture::new().await;
    let groups = f
        .get(&format!("/api/dlqs/{PRICES}/groups"), Some(VIEWER))
        .await
        .ok();
    let group = groups["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["error_class"] == "validation.wrong_type")
        .expect("a wrong-type group")
        .clone();
    let fp = group["fingerprint"].as_str().expect("fingerprint");
    let count = group["count"].as_u64().expect("count");
    let before = f.pending(PRICES).await;
    let request =
        json!({"dlq": PRICES, "target": "out", "fingerprint": fp, "fix": ".price |= tonumber"});
    let preview = f
        .post("/api/replays/preview", Some(OPERATOR), request.clone())
        .await
        .ok();
    assert_eq!(preview["matched"].as_u64(), Some(count));
    let samples = preview["samples"].as_array().expect("samples");
    assert_eq!(samples.len() as u64, count.min(5));
    assert!(
        samples
            .iter()
            .all(|s| s["changed"] == true && s["after"].is_string())
    );
    assert_eq!(f.pending(PRICES).await, before, "a preview changes nothing");
    assert!(
        !f.path("replayed.ndjson").exists(),
        "a preview writes nothing"
    );

    let started = f.post("/api/replays", Some(OPERATOR), request).await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.body);
    let id = started.json()["job"]["id"]
        .as_str()
        .expect("job id")
        .to_owned();
    let job = f.wait_for_job(&id).await;
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!(job["selected"].as_u64(), Some(count));
    assert_eq!(job["replayed"].as_u64(), Some(count));
    assert_eq!(f.pending(PRICES).await, before - count);
    let lines = std::fs::read_to_string(f.path("replayed.ndjson")).expect("target");
    assert_eq!(lines.lines().count() as u64, count);
    let actions: Vec<Value> = f
        .audit_entries()
        .iter()
        .map(|e| e["action"].clone())
        .collect();
    assert_eq!(
        actions,
        vec![
            json!("replay_preview"),
            json!("replay"),
            json!("replay_finished")
        ]
    );
    let entries = f.audit_entries();
    assert_eq!(entries[1]["details"]["target"], "out");
    assert_eq!(entries[1]["details"]["fix"], ".price |= tonumber");
    assert_eq!(entries[2]["details"]["replayed"].as_u64(), Some(count));
    // The history saw the change (the job records a sample when it ends).
    let history = f
        .get(&format!("/api/dlqs/{PRICES}/history"), Some(VIEWER))
        .await
        .ok();
    let points = history["points"].as_array().expect("points");
    assert!(points.len() >= 2);
    assert_eq!(
        points.last().expect("last")["pending"].as_u64(),
        Some(before - count)
    );
    let jobs = f.get("/api/replays", Some(VIEWER)).await.ok();
    assert_eq!(jobs["jobs"][0]["id"], id.as_str());
    // Running it again finds nothing left: nothing is delivered twice.
    let again = f
        .post(
            "/api/replays",
            Some(OPERATOR),
            json!({"dlq": PRICES, "target": "out", "fingerprint": fp}),
        )
        .await;
    let id = again.json()["job"]["id"].as_str().expect("id").to_owned();
    assert_eq!(f.wait_for_job(&id).await["selected"].as_u64(), Some(0));
    let targets = f.get("/api/replay-targets", Some(VIEWER)).await.ok();
    assert_eq!(
        targets,
        json!({"targets": [{"name": "boom"}, {"name": "broken"}, {"name": "out"}]})
    );
}

#[tokio::test]
async fn discards_settle_only_what_was_asked_and_are_audited() {
    let f = Fixture::new().await;
    let before = f.pending(RSS).await;
    let reply = f
        .post(
            &format!("/api/dlqs/{RSS}/records/discard"),
            Some(OPERATOR),
            json!({"ids": [HTML_ID, "no-such-id"]}),
        )
        .await
        .ok();
    assert_eq!(reply["discarded"], 1);
    assert_eq!(reply["not_found"], json!(["no-such-id"]));
    assert_eq!(f.pending(RSS).await, before - 1);
    let one = f
        .get(&format!("/api/dlqs/{RSS}/records/{HTML_ID}"), Some(VIEWER))
        .await
        .ok();
    assert_eq!(one["record"]["status"], "discarded");
    // Discarding it again does nothing.
    let again = f
        .post(
            &format!("/api/dlqs/{RSS}/records/discard"),
            Some(OPERATOR),
            json!({"ids": [HTML_ID]}),
        )
        .await
        .ok();
    assert_eq!(again["discarded"], 0);
    // By filter, with a limit.
    let by_filter = f
        .post(
            &format!("/api/dlqs/{RSS}/records/discard"),
            Some(OPERATOR),
            json!({"filter": "stage == \"validate\"", "limit": 3}),
        )
        .await
        .ok();
    assert_eq!(by_filter["discarded"], 3);
    assert_eq!(f.pending(RSS).await, before - 4);
    let audit = f.audit_entries();
    assert_eq!(audit.len(), 3);
    assert!(audit.iter().all(|e| e["action"] == "discard"));
    assert_eq!(audit[0]["details"]["ids"], json!([HTML_ID]));
    assert_eq!(audit[2]["details"]["count"], 3);
    assert_eq!(audit[2]["details"]["filter"], "stage == \"validate\"");
}

#[tokio::test]
async fn metrics_alerts_and_history_work_without_a_monitor() {
    let f = Fixture::new().await;
    let r = f.get("/metrics", Some(VIEWER)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.headers[header::CONTENT_TYPE]
            .to_str()
            .expect("type")
            .starts_with("text/plain")
    );
    for dlq in [RSS, PRICES] {
        assert!(
            r.body
                .contains(&format!("dlq_pending_records{{dlq=\"{dlq}\"}} ")),
            "{}",
            r.body
        );
        assert!(
            r.body
                .contains(&format!("dlq_oldest_pending_age_seconds{{dlq=\"{dlq}\"}} "))
        );
    }
    let alerts = f.get("/api/alerts", Some(VIEWER)).await.ok();
    assert_eq!(alerts, json!({"source": "builtin", "alerts": []}));
    let history = f
        .get(&format!("/api/dlqs/{RSS}/history"), Some(VIEWER))
        .await
        .ok();
    assert_eq!(history["source"], "builtin");
    assert_eq!(history["points"].as_array().expect("points").len(), 1);
    let later = f
        .get(
            &format!("/api/dlqs/{RSS}/history?since=2999-01-01T00:00:00Z"),
            Some(VIEWER),
        )
        .await
        .ok();
    assert!(later["points"].as_array().expect("points").is_empty());
}

#[tokio::test]
async fn a_plugged_in_monitor_answers_history_alerts_and_metrics() {
    struct Fake;
    impl dlq_server::MonitorView for Fake {
        fn size_history(
            &self,
            dlq: &str,
            since: chrono::DateTime<chrono::Utc>,
        ) -> Vec<dlq_server::SizePoint> {
            vec![dlq_server::SizePoint {
                at: since,
                pending: dlq.len() as u64,
                parked: 0,
                total: 0,
            }]
        }
        fn firing(&self) -> Vec<dlq_server::FiringAlertView> {
            vec![dlq_server::FiringAlertView {
                rule: "dlq_size > 10".into(),
                dlq: Some(RSS.into()),
                severity: "warning".into(),
                value: 11.0,
                threshold: Some(10.0),
                since: chrono::Utc::now(),
                message: "too big".into(),
            }]
        }
        fn metrics_text(&self) -> String {
            "dlq_fake 1\n".into()
        }
    }
    let f = Fixture::new().await;
    f.server.set_monitor(Arc::new(Fake));
    assert_eq!(f.get("/metrics", Some(VIEWER)).await.body, "dlq_fake 1\n");
    let alerts = f.get("/api/alerts", Some(VIEWER)).await.ok();
    assert_eq!(alerts["alerts"][0]["rule"], "dlq_size > 10");
    let history = f
        .get(&format!("/api/dlqs/{RSS}/history"), Some(VIEWER))
        .await
        .ok();
    assert_eq!(history["source"], "monitor");
    assert_eq!(
        history["points"][0]["pending"].as_u64(),
        Some(RSS.len() as u64)
    );
}

#[tokio::test]
async fn serves_over_tcp_on_loopback() {
    let f = Fixture::new().await;
    assert_eq!(
        f.server.config().listen.to_string(),
        "127.0.0.1:8080",
        "the default"
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = f.server;
    let task = tokio::spawn(server.serve(listener, async {
        let _ = stopped.await;
    }));
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    stream
        .write_all(format!("GET /api/health HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {VIEWER}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut text = String::new();
    stream.read_to_string(&mut text).await.expect("read");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"status\":\"ok\""));
    let _ = stop.send(());
    task.await.expect("join").expect("serve");
}

/// Starts a replay and returns its job id.
async fn start(f: &Fixture, body: Value) -> String {
    let started = f.post("/api/replays", Some(OPERATOR), body).await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.body);
    started.json()["job"]["id"]
        .as_str()
        .expect("job id")
        .to_owned()
}

#[tokio::test]
async fn a_replay_that_panics_or_fails_ends_failed_is_audited_and_frees_the_slot() {
    let f = Fixture::new().await;
    let before = f.pending(PRICES).await;
    // A bug in the replay (a panic in its thread).
    let id = start(&f, json!({"dlq": PRICES, "target": "boom", "limit": 3})).await;
    let job = f.wait_for_job(&id).await;
    assert_eq!(job["status"], "failed", "{job}");
    let error = job["error"].as_str().expect("an error");
    assert!(
        error.contains("internal error") && error.contains("cannot convert float seconds"),
        "{error}"
    );
    assert_eq!(job["selected"], 1, "the progress made is kept: {job}");
    assert_eq!(f.pending(PRICES).await, before, "nothing was settled");
    // A target that fails (its folder does not exist).
    let id = start(&f, json!({"dlq": PRICES, "target": "broken", "limit": 3})).await;
    let job = f.wait_for_job(&id).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["error"]
            .as_str()
            .expect("error")
            .contains("No such file"),
        "{job}"
    );
    // The slot is free: the next replay runs.
    let id = start(&f, json!({"dlq": PRICES, "target": "out", "limit": 2})).await;
    let job = f.wait_for_job(&id).await;
    assert_eq!(
        (job["status"].as_str(), job["replayed"].as_u64()),
        (Some("done"), Some(2))
    );
    let finished: Vec<Value> = f
        .audit_entries()
        .into_iter()
        .filter(|e| e["action"] == "replay_finished")
        .collect();
    assert_eq!(finished.len(), 3, "every end is audited: {finished:?}");
    assert_eq!(finished[0]["details"]["status"], "failed");
    assert!(
        finished[0]["details"]["error"]
            .as_str()
            .expect("error")
            .contains("cannot convert float seconds")
    );
    assert_eq!(finished[1]["details"]["status"], "failed");
    assert_eq!(finished[2]["details"]["status"], "done");
}

#[tokio::test]
async fn a_rate_outside_its_range_is_a_400_before_any_job_starts() {
    let f = Fixture::new().await;
    for rate in [
        json!(1e-300),
        json!(1e-10),
        json!(0),
        json!(-1),
        json!(1e12),
    ] {
        for path in ["/api/replays", "/api/replays/preview"] {
            let reply = f
                .post(
                    path,
                    Some(OPERATOR),
                    json!({"dlq": PRICES, "target": "out", "rate": rate}),
                )
                .await;
            let msg = reply.error(StatusCode::BAD_REQUEST);
            assert_eq!(reply.json()["error"]["code"], "invalid_rate", "{rate}");
            assert!(msg.starts_with("rate: expected"), "{msg}");
        }
    }
    assert!(
        f.get("/api/replays", Some(VIEWER)).await.ok()["jobs"]
            .as_array()
            .expect("jobs")
            .is_empty(),
        "no job started"
    );
    assert!(f.audit_entries().is_empty());
    // A rate in range replays, paced: 2 records at 20 a second take at
    // least 50 ms.
    let id = start(
        &f,
        json!({"dlq": PRICES, "target": "out", "limit": 2, "rate": 20}),
    )
    .await;
    let job = f.wait_for_job(&id).await;
    assert_eq!(job["replayed"], 2, "{job}");
    let at = |k: &str| {
        chrono::DateTime::parse_from_rfc3339(job[k].as_str().expect("instant")).expect("rfc 3339")
    };
    let took = at("finished_at") - at("started_at");
    assert!(took >= chrono::Duration::milliseconds(45), "{took}");
}

#[tokio::test]
async fn filter_fix_and_rate_errors_are_400s_naming_the_problem_on_every_route() {
    let f = Fixture::new().await;
    let bad_filter = "error_class ==";
    let encoded = urlencode(bad_filter);
    for path in [
        format!("/api/dlqs/{RSS}/records?filter={encoded}"),
        format!("/api/dlqs/{RSS}/groups?filter={encoded}"),
    ] {
        let reply = f.get(&path, Some(VIEWER)).await;
        let msg = reply.error(StatusCode::BAD_REQUEST);
        assert_eq!(reply.json()["error"]["code"], "invalid_filter", "{path}");
        assert!(
            msg.starts_with("filter: invalid filter at character"),
            "{msg}"
        );
    }
    for (path, body) in [
        (
            format!("/api/dlqs/{RSS}/records/discard"),
            json!({"filter": bad_filter}),
        ),
        (
            "/api/replays/preview".to_owned(),
            json!({"dlq": RSS, "target": "out", "filter": bad_filter}),
        ),
        (
            "/api/replays".to_owned(),
            json!({"dlq": RSS, "target": "out", "filter": bad_filter}),
        ),
    ] {
        let reply = f.post(&path, Some(OPERATOR), body).await;
        let msg = reply.error(StatusCode::BAD_REQUEST);
        assert_eq!(reply.json()["error"]["code"], "invalid_filter", "{path}");
        assert!(msg.starts_with("filter: "), "{msg}");
    }
    for path in ["/api/replays/preview", "/api/replays"] {
        let reply = f
            .post(
                path,
                Some(OPERATOR),
                json!({"dlq": RSS, "target": "out", "fix": ".price |="}),
            )
            .await;
        let msg = reply.error(StatusCode::BAD_REQUEST);
        assert_eq!(reply.json()["error"]["code"], "invalid_fix", "{path}");
        assert!(msg.starts_with("fix: "), "{msg}");
    }
    // Numbers beyond what the server does are refused, not silently cut.
    let reply = f
        .post(
            "/api/replays/preview",
            Some(OPERATOR),
            json!({"dlq": RSS, "target": "out", "samples": 51}),
        )
        .await;
    assert!(reply.error(StatusCode::BAD_REQUEST).starts_with("samples:"));
    let reply = f
        .post(
            &format!("/api/dlqs/{RSS}/records/discard"),
            Some(OPERATOR),
            json!({"filter": "retryable", "limit": 100_001}),
        )
        .await;
    assert!(reply.error(StatusCode::BAD_REQUEST).starts_with("limit:"));
    assert!(f.audit_entries().is_empty(), "nothing was done");
}

#[tokio::test]
async fn oversized_bodies_query_strings_filters_and_fixes_are_refused_before_any_work() {
    use dlq_server::limits::{MAX_BODY_BYTES, MAX_FILTER_BYTES, MAX_FIX_BYTES, MAX_QUERY_BYTES};
    let f = Fixture::new().await;
    // A body over the limit: 413, in the API's JSON shape, with the limit.
    let big = json!({"ids": vec!["x".repeat(1000); MAX_BODY_BYTES / 1000 + 1]});
    let reply = f
        .post(
            &format!("/api/dlqs/{RSS}/records/discard"),
            Some(OPERATOR),
            big,
        )
        .await;
    let msg = reply.error(StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.json()["error"]["code"], "payload_too_large");
    assert!(msg.contains(&MAX_BODY_BYTES.to_string()), "{msg}");
    // A query string over the limit: 414.
    let long = "a".repeat(MAX_QUERY_BYTES + 1);
    let reply = f
        .get(
            &format!("/api/dlqs/{RSS}/records?filter={long}"),
            Some(VIEWER),
        )
        .await;
    let msg = reply.error(StatusCode::URI_TOO_LONG);
    assert!(msg.contains(&MAX_QUERY_BYTES.to_string()), "{msg}");
    // A filter or a fix over its limit (in a query string that is not):
    // 400, naming which and the limit.
    let filter = format!("id == \"{}\"", "x".repeat(MAX_FILTER_BYTES));
    let reply = f
        .get(
            &format!("/api/dlqs/{RSS}/records?filter={}", urlencode(&filter)),
            Some(VIEWER),
        )
        .await;
    let msg = reply.error(StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["error"]["code"], "invalid_filter");
    assert!(
        msg.starts_with("filter: ") && msg.contains(&MAX_FILTER_BYTES.to_string()),
        "{msg}"
    );
    let fix = format!(".a = \"{}\"", "x".repeat(MAX_FIX_BYTES));
    let reply = f
        .post(
            "/api/replays/preview",
            Some(OPERATOR),
            json!({"dlq": RSS, "target": "out", "fix": fix}),
        )
        .await;
    let msg = reply.error(StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["error"]["code"], "invalid_fix");
    assert!(
        msg.starts_with("fix: ") && msg.contains(&MAX_FIX_BYTES.to_string()),
        "{msg}"
    );
    // Just under the limits is fine.
    let filter = format!("id == \"{}\"", "x".repeat(MAX_FILTER_BYTES - 10));
    f.get(
        &format!("/api/dlqs/{RSS}/records?filter={}", urlencode(&filter)),
        Some(VIEWER),
    )
    .await
    .ok();
    assert!(f.audit_entries().is_empty());
}

/// A request as a DNS-rebinding page sends it: its own name in `Host` and
/// in `Origin`, which agree.
fn rebinding(method: Method, path: &str, token: Option<&str>, host: &str) -> Request<Body> {
    let mut req = match method {
        Method::Get => Request::get(path),
        Method::Post => Request::post(path)
            .header(header::CONTENT_TYPE, "application/json")
            .header("x-dlq-csrf", "1"),
    }
    .header(header::HOST, host)
    .header(header::ORIGIN, format!("http://{host}"));
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let body = match method {
        Method::Get => Body::empty(),
        Method::Post => Body::from(post_body(path).to_string()),
    };
    req.body(body).expect("request")
}

#[tokio::test]
async fn a_request_by_a_foreign_host_name_is_refused_on_every_route() {
    let f = Fixture::new().await;
    for r in ROUTES {
        let path = concrete(r.path);
        let token = match r.access {
            Access::Public => None,
            _ => Some(OPERATOR),
        };
        let reply = f
            .send(rebinding(r.method, &path, token, "attacker.example:8080"))
            .await;
        let msg = reply.error(StatusCode::FORBIDDEN);
        assert_eq!(reply.json()["error"]["code"], "host_not_allowed", "{r:?}");
        assert!(
            msg.contains("\"attacker.example:8080\"")
                && msg.contains("localhost:8080")
                && msg.contains("allowed_hosts"),
            "{msg}"
        );
        assert!(
            reply.headers.contains_key(header::CONTENT_SECURITY_POLICY),
            "security headers on refusals too"
        );
    }
    assert!(
        f.audit_entries().is_empty(),
        "no reveal, replay or discard ran"
    );
    // The server's own names pass, with the listen port only.
    for host in ["127.0.0.1:8080", "localhost:8080", "[::1]:8080"] {
        let reply = f
            .send(rebinding(Method::Get, "/api/dlqs", Some(VIEWER), host))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{host}: {}", reply.body);
    }
    for host in [
        "localhost:9999",
        "localhost",
        "127.0.0.1.attacker.example:8080",
    ] {
        let reply = f
            .send(rebinding(Method::Get, "/api/dlqs", Some(VIEWER), host))
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{host}");
    }
    // No Host, or one that is not a host: 400.
    let none = Request::get("/api/dlqs")
        .header(header::AUTHORIZATION, format!("Bearer {VIEWER}"))
        .body(Body::empty())
        .expect("request");
    let msg = f.send_as_is(none).await.error(StatusCode::BAD_REQUEST);
    assert!(msg.contains("no Host header"), "{msg}");
    let reply = f.send(rebinding(Method::Get, "/", None, "a b:8080")).await;
    reply.error(StatusCode::BAD_REQUEST);
    // Two Hosts: which one would a proxy have routed by? Refused.
    let two = Request::get("/")
        .header(header::HOST, "127.0.0.1:8080")
        .header(header::HOST, "attacker.example:8080")
        .body(Body::empty())
        .expect("request");
    f.send_as_is(two).await.error(StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn names_in_allowed_hosts_are_answered_and_only_those() {
    let f = Fixture::with_serve_config(
        "allowed_hosts = [\"dlq.example.com\", \"proxy.internal:8443\"]",
    )
    .await;
    for host in [
        "dlq.example.com",
        "dlq.example.com:443",
        "proxy.internal:8443",
        "localhost:8080",
    ] {
        let reply = f
            .send(rebinding(Method::Get, "/api/dlqs", Some(VIEWER), host))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{host}: {}", reply.body);
    }
    // A POST by a configured name passes the Host and the CSRF rule.
    let reply = f
        .send(rebinding(
            Method::Post,
            &format!("/api/dlqs/{RSS}/records/{HTML_ID}/reveal"),
            Some(OPERATOR),
            "dlq.example.com",
        ))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    for host in ["proxy.internal:8080", "sub.dlq.example.com", "example.com"] {
        let reply = f
            .send(rebinding(Method::Get, "/api/dlqs", Some(VIEWER), host))
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{host}");
    }
}

#[tokio::test]
async fn over_tcp_the_bound_port_is_one_of_the_servers_names() {
    let f = Fixture::new().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(f.server.serve(listener, async {
        let _ = stopped.await;
    }));
    let port = addr.port();
    for (host, status) in [
        (format!("localhost:{port}"), "200"),
        (format!("[::1]:{port}"), "200"),
        (format!("rebound.attacker.example:{port}"), "403"),
        ("localhost:8080".to_owned(), "403"),
    ] {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        stream
            .write_all(
                format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .expect("write");
        let mut text = String::new();
        stream.read_to_string(&mut text).await.expect("read");
        assert!(
            text.starts_with(&format!("HTTP/1.1 {status}")),
            "{host}: {text}"
        );
    }
    let _ = stop.send(());
    task.await.expect("join").expect("serve");
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
