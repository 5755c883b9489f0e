//! The server: shared state, the router built from the route table, the
//! access checks, and the built-in sampler loop.

use crate::api;
use crate::audit::AuditLog;
use crate::auth::{Role, Tokens, check_csrf};
use crate::config::ServeConfig;
use crate::error::{ApiError, ApiResult};
use crate::hosts::{HostCheck, Refusal};
use crate::jobs::Jobs;
use crate::limits::{MAX_BODY_BYTES, MAX_QUERY_BYTES};
use crate::monitor::{MonitorView, Sampler};
use crate::routes::{Access, Endpoint, Method, ROUTES};
use crate::shared::SharedStore;
use crate::web;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse as _, Response};
use axum::routing::{MethodRouter, get, post};
use dlq_core::replay::{ReplayOptions, ReplayReport};
use dlq_core::store::DlqStore;
use dlq_core::triage::Triage;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

/// Runs replays to allow-listed targets. The binary implements it with its
/// own replay code (file, pipeline and Kafka targets); the server only ever
/// passes a spec taken from its configuration, never one from a request.
pub trait ReplayRunner<S>: Send + Sync + 'static {
    /// Whether a target spec (a value of `[serve.replay_targets]`) can be
    /// used with this store; checked when the configuration is loaded.
    fn check_target(&self, spec: &str) -> Result<(), String>;

    /// Runs a replay of `dlq` to the target `spec` with `options` (never a
    /// dry run: previews are made by the server). `progress` is called after
    /// each commit. Like `dlq replay`, only delivered records may be settled.
    /// The error is shown to the operator who started the job.
    fn run(
        &self,
        store: &SharedStore<S>,
        spec: &str,
        dlq: &str,
        options: &ReplayOptions,
        progress: &mut dyn FnMut(&ReplayReport),
    ) -> Result<ReplayReport, String>;
}

/// What a store needs to be served.
pub trait ServeStore: DlqStore + Send + 'static {}
impl<S: DlqStore + Send + 'static> ServeStore for S {}

/// State shared by every request.
pub(crate) struct App<S> {
    pub store: SharedStore<S>,
    pub config: ServeConfig,
    pub tokens: Tokens,
    pub runner: Arc<dyn ReplayRunner<S>>,
    pub monitor: RwLock<Option<Arc<dyn MonitorView>>>,
    /// The triage rules of the groups route (the shipped ones unless
    /// [`Server::set_triage`] says otherwise).
    pub triage: RwLock<Arc<Triage>>,
    pub sampler: Sampler,
    pub audit: AuditLog,
    pub jobs: Jobs,
}

impl<S: ServeStore> App<S> {
    /// Runs store work on the blocking pool.
    pub async fn blocking<R, F>(&self, f: F) -> ApiResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut SharedStore<S>) -> R + Send + 'static,
    {
        let mut store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&mut store))
            .await
            .map_err(|e| ApiError::internal(format!("a store task failed: {e}")))
    }

    /// Runs CPU-bound work (compiling a filter or a fix, building views)
    /// on the blocking pool, so that the async workers keep answering
    /// other requests. A panic in `f` is a `500`, not a dead server.
    pub async fn cpu<R, F>(&self, f: F) -> ApiResult<R>
    where
        R: Send + 'static,
        F: FnOnce() -> R + Send + 'static,
    {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| ApiError::internal(format!("a task failed: {e}")))
    }

    /// The triage rules in effect.
    pub fn triage(&self) -> Arc<Triage> {
        self.triage
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The plugged-in monitor, if any.
    pub fn monitor(&self) -> Option<Arc<dyn MonitorView>> {
        self.monitor
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records one sample of every DLQ's size in the built-in history.
    pub async fn sample(&self) {
        match self.blocking(|s| s.stats()).await {
            Ok(Ok(stats)) => self.sampler.record(&stats, chrono::Utc::now()),
            Ok(Err(e)) => tracing::warn!("sampling DLQ sizes: {e}"),
            Err(e) => tracing::warn!("sampling DLQ sizes: {}", e.message),
        }
    }
}

/// The `dlq serve` server over a store `S`.
pub struct Server<S> {
    app: Arc<App<S>>,
}

impl<S: ServeStore> Server<S> {
    /// A server over `store`. Opens (creates) the audit log; fails if it
    /// cannot.
    pub fn new(
        store: S,
        config: ServeConfig,
        tokens: Tokens,
        runner: Arc<dyn ReplayRunner<S>>,
    ) -> std::io::Result<Self> {
        let audit = AuditLog::open(&config.audit_log).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("opening the audit log {}: {e}", config.audit_log.display()),
            )
        })?;
        Ok(Server {
            app: Arc::new(App {
                store: SharedStore::new(store),
                sampler: Sampler::new(config.history_points),
                config,
                tokens,
                runner,
                monitor: RwLock::new(None),
                triage: RwLock::new(Triage::builtin()),
                audit,
                jobs: Jobs::new(),
            }),
        })
    }

    /// Plugs in a monitor: size history, firing alerts and `/metrics` come
    /// from it from now on, instead of the built-in sampler.
    pub fn set_monitor(&self, monitor: Arc<dyn MonitorView>) {
        *self.app.monitor.write().unwrap_or_else(|p| p.into_inner()) = Some(monitor);
    }

    /// Triages the records that carry no verdict with `triage` (the
    /// `[[triage.rule]]`s of `dlq.toml` before the shipped rules:
    /// [`crate::config::Loaded::triage`]) instead of the shipped rules.
    pub fn set_triage(&self, triage: Arc<Triage>) {
        *self.app.triage.write().unwrap_or_else(|p| p.into_inner()) = triage;
    }

    /// The configuration in effect.
    pub fn config(&self) -> &ServeConfig {
        &self.app.config
    }

    /// The store the server uses.
    pub fn store(&self) -> SharedStore<S> {
        self.app.store.clone()
    }

    /// Records one sample of every DLQ's size in the built-in history.
    pub async fn sample_now(&self) {
        self.app.sample().await;
    }

    /// The router: every route of [`ROUTES`] with its access check, the
    /// `Host` check and the size limits of every request, and the security
    /// headers on every response. It answers to the names of the
    /// configured listen address ([`crate::hosts`]).
    pub fn router(&self) -> Router {
        self.router_for(&[self.app.config.listen])
    }

    /// The router of a server listening on `listen`.
    fn router_for(&self, listen: &[SocketAddr]) -> Router {
        let hosts = Arc::new(HostCheck::new(listen, &self.app.config.allowed_hosts));
        let mut router: Router<Arc<App<S>>> = Router::new();
        for r in ROUTES {
            let guard = Guard {
                app: self.app.clone(),
                access: r.access,
            };
            let handler = method_router::<S>(r.endpoint, r.method)
                .layer(middleware::from_fn_with_state(guard, check_access::<S>));
            router = router.route(r.path, handler);
        }
        router
            .fallback(|| async { ApiError::not_found("no such route").into_response() })
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .layer(middleware::from_fn(check_query))
            .layer(middleware::from_fn_with_state(hosts, check_host))
            .layer(middleware::map_response(web::json_errors))
            .layer(middleware::map_response(web::security_headers))
            .with_state(self.app.clone())
    }

    /// Serves on `listener` until `shutdown` completes, sampling DLQ sizes
    /// every `sample_interval` meanwhile.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = self.app.clone();
        let every = self.app.config.sample_interval;
        // The names carry the port actually bound (port 0 asks for any).
        let router = self.router_for(&[listener.local_addr()?]);
        let sampler = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                app.sample().await;
            }
        });
        let result = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await;
        sampler.abort();
        result
    }
}

fn method_router<S: ServeStore>(endpoint: Endpoint, method: Method) -> MethodRouter<Arc<App<S>>> {
    let m: MethodRouter<Arc<App<S>>> = match endpoint {
        Endpoint::Index => get(web::index),
        Endpoint::Asset => get(web::asset),
        Endpoint::Health => get(api::health::<S>),
        Endpoint::ListDlqs => get(api::list_dlqs::<S>),
        Endpoint::GetDlq => get(api::get_dlq::<S>),
        Endpoint::Groups => get(api::groups::<S>),
        Endpoint::History => get(api::history::<S>),
        Endpoint::Records => get(api::records::<S>),
        Endpoint::Record => get(api::record::<S>),
        Endpoint::Reveal => post(api::reveal::<S>),
        Endpoint::Discard => post(api::discard::<S>),
        Endpoint::Alerts => get(api::alerts::<S>),
        Endpoint::ReplayTargets => get(api::replay_targets::<S>),
        Endpoint::Preview => post(api::preview::<S>),
        Endpoint::StartReplay => post(api::start_replay::<S>),
        Endpoint::ListReplays => get(api::list_replays::<S>),
        Endpoint::GetReplay => get(api::get_replay::<S>),
        Endpoint::Audit => get(api::audit_log::<S>),
        Endpoint::Metrics => get(api::metrics::<S>),
    };
    debug_assert_eq!(
        method,
        if matches!(
            endpoint,
            Endpoint::Reveal | Endpoint::Discard | Endpoint::Preview | Endpoint::StartReplay
        ) {
            Method::Post
        } else {
            Method::Get
        }
    );
    m
}

struct Guard<S> {
    app: Arc<App<S>>,
    access: Access,
}

impl<S> Clone for Guard<S> {
    fn clone(&self) -> Self {
        Guard {
            app: self.app.clone(),
            access: self.access,
        }
    }
}

/// The access check of one route: a valid token (401), the role (403), and
/// for `POST` the CSRF rule (403). The caller's role and label go into the
/// request for the handler (audit entries).
async fn check_access<S: ServeStore>(
    State(guard): State<Guard<S>>,
    mut req: Request,
    next: Next,
) -> Response {
    if guard.access == Access::Public {
        return next.run(req).await;
    }
    let Some(principal) = guard.app.tokens.from_headers(req.headers()) else {
        return ApiError::unauthorized().into_response();
    };
    if guard.access == Access::Operator && principal.role != Role::Operator {
        return ApiError::forbidden("this needs an operator token").into_response();
    }
    // By the request's own method: anything but GET and HEAD must pass
    // the CSRF rule (a GET to a POST route goes on to its 405).
    let reads = matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    );
    if !reads && let Err(why) = check_csrf(req.headers()) {
        return ApiError::new(axum::http::StatusCode::FORBIDDEN, "csrf", why).into_response();
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// Refuses a request that does not call the server by one of its names
/// (DNS rebinding; see [`crate::hosts`]). Runs before anything else, for
/// every route.
async fn check_host(State(hosts): State<Arc<HostCheck>>, req: Request, next: Next) -> Response {
    let mut given = req.headers().get_all(header::HOST).iter();
    let host = match (given.next(), given.next()) {
        (Some(h), None) => h.to_str().ok().ok_or(Refusal::Malformed),
        (None, _) => req
            .uri()
            .authority()
            .map(|a| a.as_str())
            .ok_or(Refusal::Missing),
        (Some(_), Some(_)) => Err(Refusal::Malformed),
    };
    let shown: String = match &host {
        Ok(h) => h.chars().take(100).collect(),
        Err(_) => req
            .headers()
            .get(header::HOST)
            .map(|h| {
                String::from_utf8_lossy(h.as_bytes())
                    .chars()
                    .take(100)
                    .collect()
            })
            .unwrap_or_default(),
    };
    let refusal = match host.and_then(|h| hosts.check(Some(h))) {
        Ok(()) => return next.run(req).await,
        Err(r) => r,
    };
    match refusal {
        Refusal::Missing => ApiError::bad_request(
            "the request has no Host header (HTTP/1.1 requires one)",
        ),
        Refusal::Malformed => ApiError::bad_request(format!(
            "the Host header {shown:?} is not one HOST[:PORT]"
        )),
        Refusal::NotAllowed => {
            tracing::info!(host = ?shown, "refused a request by a name this server does not answer to");
            ApiError::new(
                StatusCode::FORBIDDEN,
                "host_not_allowed",
                format!(
                    "this server does not answer to the name {shown:?} (it answers to {}); \
                     requests by other names are refused against DNS rebinding. To reach it \
                     by this name, add it to allowed_hosts in the [serve] section of dlq.toml",
                    hosts.describe()
                ),
            )
        }
    }
    .into_response()
}

/// Refuses a query string longer than [`MAX_QUERY_BYTES`] before any of it
/// is parsed.
async fn check_query(req: Request, next: Next) -> Response {
    match req.uri().query() {
        Some(q) if q.len() > MAX_QUERY_BYTES => ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!(
                "the query string is {} bytes, more than the {MAX_QUERY_BYTES} this server accepts",
                q.len()
            ),
        )
        .into_response(),
        _ => next.run(req).await,
    }
}
