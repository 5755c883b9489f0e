//! `dlq serve`: an HTTP API, a web dashboard and Prometheus metrics over a
//! dlq store.
//!
//! The command line opens a store and hands it to a [`Server`]; the server
//! answers JSON requests (DLQ sizes, failure groups, records with masked
//! payloads, replays and discards), serves a static dashboard that calls the
//! same API, and exposes `/metrics`. It is generic over the store
//! ([`dlq_core::store::DlqStore`]) and knows nothing of Kafka or of the
//! MarketLag pipelines: replays run through a [`ReplayRunner`] that the
//! binary provides, to targets named in a server-side allow-list only.
//!
//! # Security model
//!
//! * It binds `127.0.0.1:8080` unless told otherwise.
//! * It answers only requests that call it by one of its own names
//!   (`localhost`, its addresses, `[serve] allowed_hosts`): a DNS-rebinding
//!   page cannot reach it under its own name ([`hosts`]).
//! * Bodies, query strings, filters and fixes have size limits, and filter
//!   scans, previews and analyses run on the blocking pool ([`limits`]).
//! * Every API route and `/metrics` needs `Authorization: Bearer <token>`.
//!   Tokens come from the config file or the environment, never from the
//!   command line; they are compared in constant time, and only their role
//!   and label are ever logged or audited. The dashboard's static files are
//!   public: they carry no data.
//! * Two roles: a *viewer* reads; an *operator* also reveals payloads,
//!   previews and runs replays, and discards records ([`Role`]).
//! * State changes only by `POST`, which must carry the `X-DLQ-CSRF` header
//!   and, when the browser sends one, an `Origin` equal to the server's own.
//!   No CORS headers are sent, so another site cannot add that header.
//! * Payloads are masked (length and SHA-256 prefix) until an operator
//!   reveals one; every reveal, preview, replay and discard is written to an
//!   append-only JSON Lines audit log first ([`audit`]).
//! * Responses carry a strict `Content-Security-Policy` (no inline script),
//!   `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer` and
//!   `X-Frame-Options: DENY`; JSON escapes `<`, `>` and `&`, and the
//!   dashboard writes data into the page as text only.
//!
//! # Layout
//!
//! * [`config`]: the `[serve]` section of `dlq.toml` and the tokens.
//! * [`hosts`]: the `Host` allow-list; [`limits`]: what a request may ask.
//! * [`auth`]: roles, token checks, the CSRF rule.
//! * [`routes`]: the one route table ([`routes::ROUTES`]) the router, the
//!   access checks and the OpenAPI test all read.
//! * `api`: the handlers; [`jobs`]: background replays; [`audit`]: the log.
//! * [`monitor`]: the [`MonitorView`] seam for the monitor crate, and the
//!   small built-in sampler used without it.
//! * `web`: the embedded dashboard and the security headers.
//!
//! # Example
//!
//! ```no_run
//! use dlq_server::{Server, ServeConfig, config::Loaded};
//! # fn runner() -> std::sync::Arc<dyn dlq_server::ReplayRunner<dlq_core::memory::MemoryStore>> { unimplemented!() }
//! # async fn demo() -> std::io::Result<()> {
//! let runner = runner();
//! let Loaded { config, tokens, triage } = dlq_server::config::load_str(
//!     "[serve]\nlisten = \"127.0.0.1:8080\"\n",
//!     std::path::Path::new("."),
//!     &|name| std::env::var(name).ok(),
//!     &|spec| runner.check_target(spec),
//! )
//! .expect("valid config");
//! let server = Server::new(dlq_core::memory::MemoryStore::new(), config, tokens, runner)?;
//! server.set_triage(triage);
//! let listener = tokio::net::TcpListener::bind(server.config().listen).await?;
//! server.serve(listener, std::future::pending()).await
//! # }
//! ```

mod api;
pub mod audit;
pub mod auth;
pub mod config;
mod error;
pub mod hosts;
pub mod jobs;
pub mod limits;
pub mod monitor;
pub mod routes;
mod server;
mod shared;
mod web;

pub use auth::{Principal, Role, Tokens};
pub use config::{ConfigError, ServeConfig};
pub use monitor::{FiringAlertView, MonitorView, SizePoint};
pub use server::{ReplayRunner, Server};
pub use shared::SharedStore;
