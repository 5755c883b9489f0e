//! The JSON API handlers. Routes and access rules are in [`crate::routes`];
//! request and response shapes are documented in `openapi.yaml`.

use crate::audit::{Action, AuditEntry};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, Json, json_response};
use crate::jobs::Job;
use crate::limits::{MAX_FILTER_BYTES, MAX_FIX_BYTES, check_len, check_rate};
use crate::server::{App, ServeStore};
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use dlq_core::analyze::{Analyzer, Group, Grouper, load_grouper, save_grouper};
use dlq_core::envelope::{Origin, Source, sha256_hex};
use dlq_core::filter::Filter;
use dlq_core::fix::Fix;
use dlq_core::replay::{self, Preview, ReplayOptions, ReplayReport};
use dlq_core::store::{
    Cursor, DlqStats, DlqStore as _, PartitionStats, Selection, Status, StoredRecord,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

type AppState<S> = State<Arc<App<S>>>;
type Params = Query<BTreeMap<String, String>>;

/// Most records one page of `GET …/records` returns.
const MAX_PAGE: usize = 500;
/// Most sample records a preview shows.
const MAX_SAMPLES: usize = 50;
/// Most records one discard settles.
const MAX_DISCARD: u64 = 100_000;
/// Record ids written into one audit entry (the count is always there).
const AUDIT_IDS: usize = 1000;

// ---------------------------------------------------------------- helpers

fn only_params(params: &BTreeMap<String, String>, allowed: &[&str]) -> ApiResult<()> {
    for k in params.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter {k:?} (known: {})",
                allowed.join(", ")
            )));
        }
    }
    Ok(())
}

fn parse_body<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> ApiResult<T> {
    let kind = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim)
        .unwrap_or("");
    if !kind.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as Content-Type: application/json",
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
}

fn parse_filter(text: &str) -> ApiResult<Filter> {
    Filter::parse(text).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_filter",
            format!("filter: {e}"),
        )
    })
}

fn parse_statuses(text: Option<&String>, include_parked: bool) -> ApiResult<Vec<Status>> {
    let mut statuses = match text.map(String::as_str) {
        None | Some("") => vec![Status::Pending],
        Some("all") => Status::ALL.to_vec(),
        Some(list) => list
            .split(',')
            .map(|s| {
                Status::parse(s.trim()).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "status {s:?}: expected pending, parked, replayed, discarded, archived or all"
                    ))
                })
            })
            .collect::<ApiResult<Vec<_>>>()?,
    };
    if include_parked && !statuses.contains(&Status::Parked) {
        statuses.push(Status::Parked);
    }
    Ok(statuses)
}

fn is_fingerprint(s: &str) -> bool {
    s.len() == 16
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The template miners `dlq analyze` (or the groups route) saved in the
/// store: fingerprints are evaluated against them, so a group's fingerprint
/// selects exactly the records the analysis counted.
async fn grouper<S: ServeStore>(app: &App<S>) -> ApiResult<Arc<Grouper>> {
    let (grouper, unreadable) = app.blocking(|s| load_grouper(&*s)).await??;
    for e in unreadable {
        tracing::warn!("{e}; its failure groups start over");
    }
    Ok(Arc::new(grouper))
}

/// Gives a filter that reads `fingerprint` the saved template miners.
fn with_grouper(filter: Option<Filter>, grouper: &Arc<Grouper>) -> Option<Filter> {
    filter.map(|f| f.with_grouper(grouper.clone()))
}

/// The filter selecting a group and/or a filter, compiled off the async
/// workers (a parser's work grows with its input; the async workers must
/// stay free for other requests).
async fn selection_filter<S: ServeStore>(
    app: &App<S>,
    fingerprint: Option<&str>,
    filter: Option<&str>,
) -> ApiResult<Option<Filter>> {
    if let Some(f) = filter {
        check_len("invalid_filter", "filter", f, MAX_FILTER_BYTES)?;
    }
    let fingerprint = fingerprint.map(str::to_owned);
    let filter = filter.map(str::to_owned);
    app.cpu(move || compile_selection(fingerprint.as_deref(), filter.as_deref()))
        .await?
}

/// The filter text selecting a group and/or a filter, checked.
fn compile_selection(fingerprint: Option<&str>, filter: Option<&str>) -> ApiResult<Option<Filter>> {
    let mut parts = Vec::new();
    if let Some(fp) = fingerprint.filter(|f| !f.is_empty()) {
        if !is_fingerprint(fp) {
            return Err(ApiError::bad_request(
                "fingerprint: expected the 16 hex digits of a group (see …/groups)",
            ));
        }
        parts.push(format!("fingerprint == \"{fp}\""));
    }
    if let Some(f) = filter.map(str::trim).filter(|f| !f.is_empty()) {
        // Checked alone first, so the error points into the user's text.
        parse_filter(f)?;
        parts.push(if parts.is_empty() {
            f.to_owned()
        } else {
            format!("({f})")
        });
    }
    if parts.is_empty() {
        return Ok(None);
    }
    parse_filter(&parts.join(" and ")).map(Some)
}

async fn ensure_dlq<S: ServeStore>(app: &App<S>, dlq: &str) -> ApiResult<()> {
    let name = dlq.to_owned();
    let known = app.blocking(move |s| s.dlqs()).await??;
    if known.contains(&name) {
        Ok(())
    } else {
        Err(ApiError::not_found(format!("no DLQ named {dlq:?}")))
    }
}

/// Appends an audit entry (and syncs it to disk, off the async workers).
async fn record_audit<S: ServeStore>(
    app: &Arc<App<S>>,
    who: &Principal,
    action: Action,
    dlq: &str,
    details: serde_json::Value,
) -> ApiResult<()> {
    let entry = AuditEntry {
        at: Utc::now(),
        actor: who.clone(),
        action,
        dlq: dlq.to_owned(),
        details,
    };
    let writer = app.clone();
    app.cpu(move || writer.audit.append(&entry))
        .await?
        .map_err(|e| {
            tracing::error!("audit log {}: {e}", app.audit.path().display());
            ApiError::internal("the audit log cannot be written, so the action was not carried out")
        })
}

// ---------------------------------------------------------------- DLQs

/// One DLQ's size (the shape of `dlq stats --format json`).
#[derive(Serialize)]
struct DlqRow {
    dlq: String,
    pending: u64,
    parked: u64,
    replayed: u64,
    discarded: u64,
    archived: u64,
    total: u64,
    oldest_pending_at: Option<DateTime<Utc>>,
    oldest_pending_age_seconds: Option<i64>,
    partitions: Vec<PartitionStats>,
}

impl DlqRow {
    fn new(s: DlqStats, now: DateTime<Utc>) -> Self {
        DlqRow {
            oldest_pending_age_seconds: s.oldest_pending_age(now).map(|d| d.num_seconds()),
            dlq: s.dlq,
            pending: s.pending,
            parked: s.parked,
            replayed: s.replayed,
            discarded: s.discarded,
            archived: s.archived,
            total: s.total,
            oldest_pending_at: s.oldest_pending_at,
            partitions: s.partitions,
        }
    }
}

/// The store answers; also says who the caller is (the dashboard checks a
/// token with it).
pub async fn health<S: ServeStore>(
    State(app): AppState<S>,
    Extension(who): Extension<Principal>,
) -> ApiResult<Response> {
    match app.blocking(|s| s.dlqs()).await? {
        Ok(dlqs) => Ok(Json(serde_json::json!({
            "status": "ok",
            "version": env!("CARGO_PKG_VERSION"),
            "dlqs": dlqs.len(),
            "you": who,
        }))
        .into_response()),
        Err(e) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store",
            format!("DLQ store: {e}"),
        )),
    }
}

pub async fn list_dlqs<S: ServeStore>(State(app): AppState<S>) -> ApiResult<Response> {
    let stats = app.blocking(|s| s.stats()).await??;
    let now = Utc::now();
    let rows: Vec<DlqRow> = stats.into_iter().map(|s| DlqRow::new(s, now)).collect();
    Ok(Json(serde_json::json!({ "dlqs": rows, "at": now })).into_response())
}

pub async fn get_dlq<S: ServeStore>(
    State(app): AppState<S>,
    Path(dlq): Path<String>,
) -> ApiResult<Response> {
    let stats = app.blocking(|s| s.stats()).await??;
    let now = Utc::now();
    let row = stats
        .into_iter()
        .find(|s| s.dlq == dlq)
        .ok_or_else(|| ApiError::not_found(format!("no DLQ named {dlq:?}")))?;
    Ok(Json(DlqRow::new(row, now)).into_response())
}

pub async fn groups<S: ServeStore>(
    State(app): AppState<S>,
    Path(dlq): Path<String>,
    Query(params): Params,
) -> ApiResult<Response> {
    only_params(&params, &["filter", "status", "top"])?;
    ensure_dlq(&app, &dlq).await?;
    let selection = Selection {
        dlq: Some(dlq.clone()),
        statuses: parse_statuses(params.get("status"), false)?,
        filter: selection_filter(&app, None, params.get("filter").map(String::as_str)).await?,
    };
    let top = params
        .get("top")
        .map(|t| {
            t.parse::<usize>()
                .map_err(|_| ApiError::bad_request("top: expected a number"))
        })
        .transpose()?;
    let grouper = grouper(&app).await?;
    let triage = app.triage();
    let mut selection = selection;
    selection.filter = with_grouper(selection.filter, &grouper);
    let mut groups: Vec<Group> = app
        .blocking(move |s| -> dlq_core::store::Result<Vec<Group>> {
            // Continues from the saved miners and saves what they learned,
            // as `dlq analyze` does.
            // Copied only when the filter still holds the saved state.
            let grouper = Arc::try_unwrap(grouper).unwrap_or_else(|g| Grouper::clone(&g));
            let mut analyzer = Analyzer::new().with_grouper(grouper).with_triage(triage);
            for r in s.scan_all(&selection, 1000) {
                analyzer.add(&r?);
            }
            let (groups, grouper) = analyzer.finish_with_grouper();
            // As `dlq analyze`: the groups stand without the saved state.
            if let Err(e) = save_grouper(s, &grouper) {
                tracing::warn!(error = %e, "the template miners could not be saved");
            }
            Ok(groups)
        })
        .await??;
    if let Some(n) = top {
        groups.truncate(n);
    }
    Ok(Json(serde_json::json!({ "dlqs": [dlq], "groups": groups })).into_response())
}

pub async fn history<S: ServeStore>(
    State(app): AppState<S>,
    Path(dlq): Path<String>,
    Query(params): Params,
) -> ApiResult<Response> {
    only_params(&params, &["since"])?;
    ensure_dlq(&app, &dlq).await?;
    let since = match params.get("since") {
        None => Utc::now() - chrono::Duration::hours(24),
        Some(t) => DateTime::parse_from_rfc3339(t)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| {
                ApiError::bad_request(format!(
                    "since: expected an RFC 3339 instant such as 2026-11-29T00:00:00Z: {e}"
                ))
            })?,
    };
    // A monitor reads its history from SQLite (and may wait for a tick):
    // off the async workers.
    let (source, points) = match app.monitor() {
        Some(m) => {
            let d = dlq.clone();
            ("monitor", app.cpu(move || m.size_history(&d, since)).await?)
        }
        None => ("builtin", app.sampler.history(&dlq, since)),
    };
    Ok(Json(serde_json::json!({ "dlq": dlq, "source": source, "points": points })).into_response())
}

pub async fn alerts<S: ServeStore>(State(app): AppState<S>) -> ApiResult<Response> {
    let (source, alerts) = match app.monitor() {
        Some(m) => ("monitor", m.firing()),
        None => ("builtin", Vec::new()),
    };
    Ok(Json(serde_json::json!({ "source": source, "alerts": alerts })).into_response())
}

pub async fn metrics<S: ServeStore>(State(app): AppState<S>) -> ApiResult<Response> {
    let text = match app.monitor() {
        // Rendering waits for a tick being published: off the async workers.
        Some(m) => app.cpu(move || m.metrics_text()).await?,
        None => {
            let stats = app.blocking(|s| s.stats()).await??;
            crate::monitor::render_metrics(&stats, Utc::now())
        }
    };
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response())
}

// ---------------------------------------------------------------- records

/// A payload as viewers see it: its size and a digest prefix, so two
/// records can be compared without showing either.
#[derive(Serialize)]
struct MaskedPayload {
    masked: bool,
    bytes: usize,
    sha256_prefix: String,
    kind: &'static str,
}

fn masked(payload: &[u8]) -> MaskedPayload {
    // (serde_json does not check UTF-8 in strings it skips: check first.)
    let kind = match std::str::from_utf8(payload) {
        _ if payload.is_empty() => "empty",
        Err(_) => "binary",
        Ok(text) if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() => "json",
        Ok(_) => "text",
    };
    MaskedPayload {
        masked: true,
        bytes: payload.len(),
        sha256_prefix: sha256_hex(payload)[..12].to_owned(),
        kind,
    }
}

#[derive(Serialize)]
struct HeaderView {
    name: String,
    /// Header values may hold credentials or personal data: only their size.
    bytes: Option<usize>,
}

/// A record's metadata with its payload masked.
#[derive(Serialize)]
struct RecordView {
    dlq: String,
    id: String,
    status: Status,
    fingerprint: String,
    stored_at: DateTime<Utc>,
    settled_at: Option<DateTime<Utc>>,
    source: Source,
    key: Option<String>,
    headers: Vec<HeaderView>,
    stage: String,
    error_class: String,
    error: String,
    retryable: bool,
    attempts: u32,
    failed_at: DateTime<Utc>,
    first_failed_at: DateTime<Utc>,
    replays: u32,
    replay_of: Option<String>,
    origin: Origin,
    payload: MaskedPayload,
}

impl RecordView {
    fn new(r: &StoredRecord, grouper: &Grouper) -> Self {
        let l = &r.letter;
        RecordView {
            dlq: r.dlq.clone(),
            id: l.id.clone(),
            status: r.status,
            fingerprint: grouper.fingerprint(r),
            stored_at: r.stored_at,
            settled_at: r.settled_at,
            source: l.source.clone(),
            key: l
                .key
                .as_ref()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            headers: l
                .headers
                .iter()
                .map(|h| HeaderView {
                    name: h.name.clone(),
                    bytes: h.value.as_ref().map(Vec::len),
                })
                .collect(),
            stage: l.stage.clone(),
            error_class: l.error_class.clone(),
            error: l.error.clone(),
            retryable: l.retryable,
            attempts: l.attempts,
            failed_at: l.failed_at,
            first_failed_at: l.first_failed_at,
            replays: l.replays,
            replay_of: l.replay_of.clone(),
            origin: l.origin,
            payload: masked(&l.payload),
        }
    }
}

pub async fn records<S: ServeStore>(
    State(app): AppState<S>,
    Path(dlq): Path<String>,
    Query(params): Params,
) -> ApiResult<Response> {
    only_params(
        &params,
        &["filter", "status", "limit", "cursor", "fingerprint"],
    )?;
    ensure_dlq(&app, &dlq).await?;
    let limit = match params.get("limit") {
        None => 50,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| ApiError::bad_request(format!("limit: expected 1 to {MAX_PAGE}")))?,
    };
    let grouper = grouper(&app).await?;
    let selection = Selection {
        dlq: Some(dlq),
        statuses: parse_statuses(params.get("status"), false)?,
        filter: with_grouper(
            selection_filter(
                &app,
                params.get("fingerprint").map(String::as_str),
                params.get("filter").map(String::as_str),
            )
            .await?,
            &grouper,
        ),
    };
    let cursor = params
        .get("cursor")
        .filter(|c| !c.is_empty())
        .map(|c| Cursor(c.clone()));
    // The filter runs in the scan and each view computes a fingerprint:
    // both off the async workers.
    let (records, next) = app
        .blocking(
            move |s| -> dlq_core::store::Result<(Vec<RecordView>, Option<Cursor>)> {
                let page = s.scan(&selection, cursor.as_ref(), limit)?;
                let views = page
                    .records
                    .iter()
                    .map(|r| RecordView::new(r, &grouper))
                    .collect();
                Ok((views, page.next))
            },
        )
        .await??;
    Ok(Json(serde_json::json!({
        "records": records,
        "next_cursor": next.map(|c| c.0),
    }))
    .into_response())
}

async fn load_record<S: ServeStore>(app: &App<S>, dlq: &str, id: &str) -> ApiResult<StoredRecord> {
    let (d, i) = (dlq.to_owned(), id.to_owned());
    app.blocking(move |s| s.get(&d, &i))
        .await??
        .ok_or_else(|| ApiError::not_found(format!("no record {id:?} in {dlq:?}")))
}

pub async fn record<S: ServeStore>(
    State(app): AppState<S>,
    Path((dlq, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let r = load_record(&app, &dlq, &id).await?;
    let grouper = grouper(&app).await?;
    let view = app.cpu(move || RecordView::new(&r, &grouper)).await?;
    Ok(Json(serde_json::json!({ "record": view })).into_response())
}

pub async fn reveal<S: ServeStore>(
    State(app): AppState<S>,
    Extension(who): Extension<Principal>,
    Path((dlq, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let r = load_record(&app, &dlq, &id).await?;
    let payload = &r.letter.payload;
    let digest = sha256_hex(payload);
    record_audit(
        &app,
        &who,
        Action::Reveal,
        &dlq,
        serde_json::json!({ "id": id, "bytes": payload.len(), "sha256": digest }),
    )
    .await?;
    let body = match std::str::from_utf8(payload) {
        Ok(text) => serde_json::json!({ "encoding": "text", "text": text }),
        Err(_) => serde_json::json!({
            "encoding": "base64",
            "base64": base64::engine::general_purpose::STANDARD.encode(payload),
        }),
    };
    Ok(Json(serde_json::json!({
        "dlq": dlq,
        "id": id,
        "bytes": payload.len(),
        "sha256": digest,
        "payload": body,
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DiscardRequest {
    #[serde(default)]
    ids: Vec<String>,
    fingerprint: Option<String>,
    filter: Option<String>,
    #[serde(default)]
    include_parked: bool,
    limit: Option<u64>,
}

pub async fn discard<S: ServeStore>(
    State(app): AppState<S>,
    Extension(who): Extension<Principal>,
    Path(dlq): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let req: DiscardRequest = parse_body(&headers, &body)?;
    ensure_dlq(&app, &dlq).await?;
    let filter = with_grouper(
        selection_filter(&app, req.fingerprint.as_deref(), req.filter.as_deref()).await?,
        &grouper(&app).await?,
    );
    if req.ids.is_empty() && filter.is_none() {
        return Err(ApiError::bad_request(
            "say what to discard: ids, a fingerprint or a filter",
        ));
    }
    let limit = match req.limit {
        None => MAX_DISCARD,
        Some(l) if l <= MAX_DISCARD => l,
        Some(_) => {
            return Err(ApiError::bad_request(format!(
                "limit: expected 0 to {MAX_DISCARD} records per discard"
            )));
        }
    };
    let statuses = if req.include_parked {
        vec![Status::Pending, Status::Parked]
    } else {
        vec![Status::Pending]
    };
    let selection = Selection {
        dlq: Some(dlq.clone()),
        statuses,
        filter: filter.clone(),
    };
    let ids = req.ids.clone();
    let d = dlq.clone();
    // Which records: the ids given (those still pending, or parked when
    // asked, and matching the filter if one is given), or the selection.
    let dlq_core::discard::Chosen {
        ids: chosen,
        not_found,
    } = app
        .blocking(move |s| dlq_core::discard::choose(s, &d, &ids, &selection, limit))
        .await??;
    record_audit(
        &app,
        &who,
        Action::Discard,
        &dlq,
        serde_json::json!({
            "count": chosen.len(),
            "filter": filter.as_ref().map(Filter::as_str),
            "include_parked": req.include_parked,
            "ids": chosen.iter().take(AUDIT_IDS).collect::<Vec<_>>(),
            "ids_truncated": chosen.len() > AUDIT_IDS,
        }),
    )
    .await?;
    let d = dlq.clone();
    let selected = chosen.len();
    let settled = app
        .blocking(move |s| dlq_core::discard::settle(s, &d, &chosen))
        .await??;
    app.sample().await;
    Ok(Json(serde_json::json!({
        "dlq": dlq,
        "selected": selected,
        "discarded": settled,
        "not_found": not_found,
    }))
    .into_response())
}

// ---------------------------------------------------------------- replays

pub async fn replay_targets<S: ServeStore>(State(app): AppState<S>) -> ApiResult<Response> {
    let targets: Vec<_> = app
        .config
        .replay_targets
        .keys()
        .map(|name| serde_json::json!({ "name": name }))
        .collect();
    Ok(Json(serde_json::json!({ "targets": targets })).into_response())
}

/// A replay (or its preview) as a request describes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayRequest {
    dlq: String,
    /// An allow-listed target's name.
    target: String,
    fingerprint: Option<String>,
    filter: Option<String>,
    fix: Option<String>,
    #[serde(default)]
    include_parked: bool,
    limit: Option<u64>,
    rate: Option<f64>,
    max_replays: Option<u32>,
    /// Preview only: how many sample records to show.
    samples: Option<usize>,
}

struct Planned {
    spec: String,
    filter: Option<Filter>,
    options: ReplayOptions,
}

async fn plan<S: ServeStore>(app: &App<S>, req: &ReplayRequest) -> ApiResult<Planned> {
    let Some(spec) = app.config.replay_targets.get(&req.target) else {
        let known: Vec<&str> = app
            .config
            .replay_targets
            .keys()
            .map(String::as_str)
            .collect();
        return Err(ApiError::bad_request(format!(
            "target {:?} is not an allow-listed replay target (known: {})",
            req.target,
            if known.is_empty() {
                "none; add [serve.replay_targets] to the config".to_owned()
            } else {
                known.join(", ")
            }
        )));
    };
    ensure_dlq(app, &req.dlq).await?;
    let filter = with_grouper(
        selection_filter(app, req.fingerprint.as_deref(), req.filter.as_deref()).await?,
        &grouper(app).await?,
    );
    let mut options = ReplayOptions::for_dlq(&req.dlq);
    options.selection.filter = filter.clone();
    if req.include_parked {
        options.selection.statuses = vec![Status::Pending, Status::Parked];
    }
    if let Some(fix) = req.fix.as_deref() {
        check_len("invalid_fix", "fix", fix, MAX_FIX_BYTES)?;
    }
    let fix = req
        .fix
        .as_deref()
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(str::to_owned);
    // Compiled off the async workers, as filters are.
    options.fix = app
        .cpu(move || fix.as_deref().map(Fix::compile).transpose())
        .await?
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_fix", format!("fix: {e}")))?;
    // Checked here, before a job starts: a rate the pacing cannot use
    // would only fail (or sleep for ever) inside the job.
    if let Some(rate) = req.rate {
        check_rate(rate)?;
    }
    options.rate = req.rate;
    options.limit = req.limit;
    if let Some(m) = req.max_replays {
        if m > 100 {
            return Err(ApiError::bad_request("max_replays: expected 0 to 100"));
        }
        options.max_replays = m;
    }
    Ok(Planned {
        spec: spec.clone(),
        filter,
        options,
    })
}

#[derive(Serialize)]
struct SampleView {
    id: String,
    before: String,
    after: Option<String>,
    fix_error: Option<String>,
    changed: bool,
}

impl From<Preview> for SampleView {
    fn from(p: Preview) -> Self {
        let (after, fix_error) = match p.after {
            Ok(a) => (Some(a), None),
            Err(e) => (None, Some(e)),
        };
        SampleView {
            id: p.id,
            before: p.before,
            after,
            fix_error,
            changed: p.changed,
        }
    }
}

pub async fn preview<S: ServeStore>(
    State(app): AppState<S>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let req: ReplayRequest = parse_body(&headers, &body)?;
    let mut planned = plan(&app, &req).await?;
    let samples = match req.samples {
        None => 5,
        Some(n) if n <= MAX_SAMPLES => n,
        Some(_) => {
            return Err(ApiError::bad_request(format!(
                "samples: expected 0 to {MAX_SAMPLES}"
            )));
        }
    };
    planned.options.dry_run = true;
    let options = planned.options;
    // The engine's dry-run step on the first records; a count of them all.
    let (matched, report) = app
        .blocking(move |s| -> dlq_core::store::Result<(u64, ReplayReport)> {
            let mut report = ReplayReport {
                dry_run: true,
                ..ReplayReport::default()
            };
            let mut matched = 0u64;
            for r in s.scan_all(&options.selection, 1000) {
                let r = r?;
                if options.limit.is_some_and(|l| matched >= l) {
                    break;
                }
                matched += 1;
                if report.previews.len() < samples {
                    let _ = replay::fixed_payload(&r, &options, &mut report);
                }
            }
            report.selected = matched;
            Ok((matched, report))
        })
        .await??;
    let sample_ids: Vec<&str> = report.previews.iter().map(|p| p.id.as_str()).collect();
    record_audit(
        &app,
        &who,
        Action::ReplayPreview,
        &req.dlq,
        serde_json::json!({
            "target": req.target,
            "filter": planned.filter.as_ref().map(Filter::as_str),
            "fix": req.fix,
            "matched": matched,
            "sample_ids": sample_ids,
        }),
    )
    .await?;
    let fix_failed = report.previews.iter().filter(|p| p.after.is_err()).count();
    let changed = report.previews.iter().filter(|p| p.changed).count();
    let samples: Vec<SampleView> = report.previews.into_iter().map(SampleView::from).collect();
    Ok(Json(serde_json::json!({
        "dlq": req.dlq,
        "target": req.target,
        "filter": planned.filter.as_ref().map(Filter::as_str),
        "fix": req.fix,
        "matched": matched,
        "samples": samples,
        "samples_changed": changed,
        "samples_fix_failed": fix_failed,
    }))
    .into_response())
}

pub async fn start_replay<S: ServeStore>(
    State(app): AppState<S>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let req: ReplayRequest = parse_body(&headers, &body)?;
    if req.samples.is_some() {
        return Err(ApiError::bad_request(
            "samples is for /api/replays/preview only",
        ));
    }
    let planned = plan(&app, &req).await?;
    let filter_text = planned
        .filter
        .as_ref()
        .map(|f| f.as_str().to_owned())
        .unwrap_or_default();
    let job = Job::new(
        &req.dlq,
        &req.target,
        &filter_text,
        req.fix.as_deref(),
        who.clone(),
    );
    let job = app.jobs.start(job).map_err(|running| {
        ApiError::new(
            StatusCode::CONFLICT,
            "replay_running",
            format!("replay {running} is still running; one replay runs at a time"),
        )
    })?;
    // Until its thread owns it, the job is ended by this guard if the
    // request stops here (an audit log that cannot be written, or a client
    // that went away while the entry was written): the slot is never left
    // taken by a job that will not run.
    let mut unstarted = Unstarted {
        app: &app,
        id: &job.id,
        why: "not started: the request was cancelled before the job started",
        armed: true,
        audit_end: true,
    };
    record_audit(
        &app,
        &who,
        Action::Replay,
        &req.dlq,
        serde_json::json!({
            "job": job.id,
            "target": req.target,
            "filter": filter_text,
            "fix": req.fix,
            "include_parked": req.include_parked,
            "limit": req.limit,
            "rate": req.rate,
            "max_replays": planned.options.max_replays,
        }),
    )
    .await
    .inspect_err(|_| {
        unstarted.why = "not started: the audit log cannot be written";
        // Its start is not in the log: neither is its end.
        unstarted.audit_end = false;
    })?;
    unstarted.disarm();
    let id = job.id.clone();
    let worker = app.clone();
    let dlq = req.dlq.clone();
    tokio::task::spawn_blocking(move || {
        let app = worker;
        // Ends the job whatever the runner does (a result, an error or a
        // panic), so the slot is freed; its end is audited and the sizes
        // sampled before the job shows as done.
        app.jobs.run(
            &id,
            |progress| {
                app.runner
                    .run(&app.store, &planned.spec, &dlq, &planned.options, progress)
            },
            |job| {
                if let Some(e) = &job.error {
                    tracing::warn!(job = %job.id, dlq = %dlq, error = %e, "replay failed");
                }
                audit_finished(&app, job);
                match app.store.stats() {
                    Ok(stats) => app.sampler.record(&stats, Utc::now()),
                    Err(e) => tracing::warn!("sampling DLQ sizes after a replay: {e}"),
                }
            },
        );
    });
    Ok(json_response(
        StatusCode::ACCEPTED,
        &serde_json::json!({ "job": job }),
    ))
}

/// Ends a registered job as failed when dropped (see `start_replay`).
struct Unstarted<'a, S: ServeStore> {
    app: &'a App<S>,
    id: &'a str,
    why: &'static str,
    armed: bool,
    /// Whether to audit the end (the start entry was, or may have been,
    /// written: a cancelled request's blocking write still completes).
    audit_end: bool,
}

impl<S: ServeStore> Unstarted<'_, S> {
    /// The job's thread owns it now.
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl<S: ServeStore> Drop for Unstarted<'_, S> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let job = self.app.jobs.finish(self.id, Err(self.why.to_owned()));
        if let Some(job) = job.filter(|_| self.audit_end) {
            audit_finished(self.app, &job);
        }
    }
}

/// Records the end of a replay job (blocking: call it off the async
/// workers, or on a path as rare as a cancelled request). A log that
/// cannot be written is logged: the job is over either way.
fn audit_finished<S: ServeStore>(app: &App<S>, job: &Job) {
    let entry = AuditEntry {
        at: Utc::now(),
        actor: job.started_by.clone(),
        action: Action::ReplayFinished,
        dlq: job.dlq.clone(),
        details: serde_json::json!({
            "job": job.id,
            "status": job.status,
            "selected": job.selected,
            "replayed": job.replayed,
            "failed": job.failed,
            "parked": job.parked,
            "fix_failed": job.fix_failed,
            "error": job.error,
        }),
    };
    if let Err(e) = app.audit.append(&entry) {
        tracing::error!("audit log: recording the end of replay {}: {e}", job.id);
    }
}

pub async fn list_replays<S: ServeStore>(State(app): AppState<S>) -> ApiResult<Response> {
    Ok(Json(serde_json::json!({ "jobs": app.jobs.list() })).into_response())
}

pub async fn get_replay<S: ServeStore>(
    State(app): AppState<S>,
    Path(job): Path<String>,
) -> ApiResult<Response> {
    let job = app
        .jobs
        .get(&job)
        .ok_or_else(|| ApiError::not_found(format!("no replay job {job:?}")))?;
    Ok(Json(serde_json::json!({ "job": job })).into_response())
}

// ---------------------------------------------------------------- audit

pub async fn audit_log<S: ServeStore>(
    State(app): AppState<S>,
    Query(params): Params,
) -> ApiResult<Response> {
    only_params(&params, &["limit"])?;
    let limit = match params.get("limit") {
        None => 200,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| ApiError::bad_request("limit: expected 1 to 10000"))?,
    };
    let reader = app.clone();
    let entries = app
        .cpu(move || reader.audit.tail(limit))
        .await?
        .map_err(|e| ApiError::internal(format!("reading the audit log: {e}")))?;
    Ok(Json(serde_json::json!({ "entries": entries })).into_response())
}
