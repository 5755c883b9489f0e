//! The route table: every route, its method and who may call it, in one
//! place. The router is built from it, the access checks read it, and a
//! test compares it with `openapi.yaml`.

/// An HTTP method the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Method {
    /// Reads.
    Get,
    /// State changes and previews (which reveal payloads); needs the CSRF
    /// header.
    Post,
}

impl Method {
    /// `get` or `post`, as OpenAPI spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Post => "post",
        }
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: the dashboard's static files, which carry no data.
    Public,
    /// A viewer or an operator token.
    Viewer,
    /// An operator token.
    Operator,
}

/// What a route does (the handler it maps to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// The dashboard's page shell.
    Index,
    /// A static file of the dashboard.
    Asset,
    /// The server and its store answer; who the caller is.
    Health,
    /// Every DLQ's size.
    ListDlqs,
    /// One DLQ's size.
    GetDlq,
    /// A DLQ's failure groups.
    Groups,
    /// A page of a DLQ's records, payloads masked.
    Records,
    /// One record, payload masked.
    Record,
    /// One record's payload (operator, audited).
    Reveal,
    /// Settle records as discarded (operator, audited).
    Discard,
    /// A DLQ's size over time.
    History,
    /// Alerts firing now.
    Alerts,
    /// Prometheus text.
    Metrics,
    /// The allow-listed replay target names.
    ReplayTargets,
    /// A replay's dry run (operator, audited).
    Preview,
    /// Start a replay job (operator, audited).
    StartReplay,
    /// Every replay job.
    ListReplays,
    /// One replay job.
    GetReplay,
    /// The audit log (operator).
    Audit,
}

/// One route.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// The method.
    pub method: Method,
    /// The path, with `{name}` parameters as axum and OpenAPI write them.
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// What it does.
    pub endpoint: Endpoint,
}

const fn route(method: Method, path: &'static str, access: Access, endpoint: Endpoint) -> Route {
    Route {
        method,
        path,
        access,
        endpoint,
    }
}

use Access::{Operator, Public, Viewer};
use Method::{Get, Post};

/// Every route of the server.
pub const ROUTES: &[Route] = &[
    route(Get, "/", Public, Endpoint::Index),
    route(Get, "/assets/{name}", Public, Endpoint::Asset),
    route(Get, "/api/health", Viewer, Endpoint::Health),
    route(Get, "/api/dlqs", Viewer, Endpoint::ListDlqs),
    route(Get, "/api/dlqs/{dlq}", Viewer, Endpoint::GetDlq),
    route(Get, "/api/dlqs/{dlq}/groups", Viewer, Endpoint::Groups),
    route(Get, "/api/dlqs/{dlq}/history", Viewer, Endpoint::History),
    route(Get, "/api/dlqs/{dlq}/records", Viewer, Endpoint::Records),
    route(
        Get,
        "/api/dlqs/{dlq}/records/{id}",
        Viewer,
        Endpoint::Record,
    ),
    route(
        Post,
        "/api/dlqs/{dlq}/records/{id}/reveal",
        Operator,
        Endpoint::Reveal,
    ),
    route(
        Post,
        "/api/dlqs/{dlq}/records/discard",
        Operator,
        Endpoint::Discard,
    ),
    route(Get, "/api/alerts", Viewer, Endpoint::Alerts),
    route(Get, "/api/replay-targets", Viewer, Endpoint::ReplayTargets),
    route(Post, "/api/replays/preview", Operator, Endpoint::Preview),
    route(Post, "/api/replays", Operator, Endpoint::StartReplay),
    route(Get, "/api/replays", Viewer, Endpoint::ListReplays),
    route(Get, "/api/replays/{job}", Viewer, Endpoint::GetReplay),
    route(Get, "/api/audit", Operator, Endpoint::Audit),
    route(Get, "/metrics", Viewer, Endpoint::Metrics),
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn routes_are_unique_and_every_post_needs_an_operator() {
        let mut seen = HashSet::new();
        for r in ROUTES {
            assert!(seen.insert((r.method, r.path)), "duplicate {r:?}");
            if r.method == Method::Post {
                assert_eq!(r.access, Access::Operator, "{r:?}");
            }
            if r.access == Access::Public {
                assert!(!r.path.starts_with("/api"), "an API route is public: {r:?}");
            }
        }
    }
}
