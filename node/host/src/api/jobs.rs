//! Deployments and resources in the HTTP API.
//!
//! | request | answer |
//! |---|---|
//! | `POST /deployments?file=job.toml&pin=<id>,<id>` (body: the spec's text, TOML or YAML by the file name's extension) | `{"id": N}`; 400 with the spec's error (`job.toml:3: resources.cores: ...`) |
//! | `GET /deployments` | every [`DeploymentView`] of this node |
//! | `GET /deployments/{id}` | one [`DeploymentView`]; 404 if unknown |
//! | `GET /deployments/{id}/logs?from=N` | its kept [`LogLine`]s from the `N`-th on |
//! | `POST /deployments/{id}/shutdown` | `{}`; 404 if unknown |
//! | `GET /deployments/{id}/follow?from=N` | a stream of JSON lines ([`FollowItem`]): every state entered and every log line as they happen, ending after the final state |
//! | `GET /resources` | [`ResourcesView`]: the provider's capacity, allocations and counters |

use std::path::PathBuf;
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use flotilla_core::PeerId;
use flotilla_core::deployment::DeployState;
use flotilla_core::job::JobSpec;
use flotilla_core::jobs::{DeploymentView, LogLine};
use serde::{Deserialize, Serialize};

use super::{ApiState, error, stopped};

/// How often a follow stream looks for news.
pub const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// Query of `POST /deployments`.
#[derive(Debug, Deserialize)]
pub struct DeployQuery {
    /// The spec's file name, for its format and for error messages.
    file: Option<String>,
    /// Providers to ask, comma-separated.
    pin: Option<String>,
}

/// Answer of `POST /deployments`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployReply {
    /// The deployment's number.
    pub id: u64,
}

/// One item of a follow stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FollowItem {
    /// The deployment entered `state`.
    State {
        /// The state.
        state: DeployState,
        /// Why.
        reason: String,
    },
    /// A log line.
    Log(LogLine),
}

pub(super) async fn deploy(
    State(s): State<ApiState>,
    Query(q): Query<DeployQuery>,
    body: Bytes,
) -> Response {
    let file = PathBuf::from(q.file.unwrap_or_else(|| "job.toml".into()));
    let Ok(text) = std::str::from_utf8(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("{}: not UTF-8 text", file.display()),
        );
    };
    let spec = match JobSpec::from_str_at(text, &file) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let mut pinned = Vec::new();
    for p in q
        .pin
        .iter()
        .flat_map(|p| p.split(','))
        .filter(|p| !p.is_empty())
    {
        match p.parse::<PeerId>() {
            Ok(id) => pinned.push(id),
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "pin: `{p}` is not a peer id ({e}); write one as `flotilla peers` lists it"
                    ),
                );
            }
        }
    }
    match s.driver.deploy(spec, pinned).await {
        Ok(id) => Json(DeployReply { id }).into_response(),
        Err(e) => error(StatusCode::CONFLICT, e),
    }
}

pub(super) async fn list(State(s): State<ApiState>) -> Response {
    match s.driver.deployments().await {
        Some(v) => Json(v).into_response(),
        None => stopped(),
    }
}

async fn one(s: &ApiState, id: u64) -> Result<DeploymentView, Response> {
    let all = s.driver.deployments().await.ok_or_else(stopped)?;
    all.into_iter()
        .find(|d| d.id == id)
        .ok_or_else(|| unknown(id))
}

fn unknown(id: u64) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("no deployment {id} on this node; `flotilla deployments list` shows them"),
    )
}

pub(super) async fn status(State(s): State<ApiState>, Path(id): Path<u64>) -> Response {
    match one(&s, id).await {
        Ok(v) => Json(v).into_response(),
        Err(r) => r,
    }
}

/// Query of the log endpoints.
#[derive(Debug, Deserialize)]
pub struct FromQuery {
    /// The first line wanted.
    from: Option<usize>,
}

pub(super) async fn logs(
    State(s): State<ApiState>,
    Path(id): Path<u64>,
    Query(q): Query<FromQuery>,
) -> Response {
    match s.driver.logs(id, q.from.unwrap_or(0)).await {
        Some(lines) => Json(lines).into_response(),
        None => unknown(id),
    }
}

pub(super) async fn shutdown(State(s): State<ApiState>, Path(id): Path<u64>) -> Response {
    match s.driver.shutdown(id).await {
        Ok(()) => Json(serde_json::json!({})).into_response(),
        Err(e) => error(StatusCode::NOT_FOUND, e),
    }
}

pub(super) async fn resources(State(s): State<ApiState>) -> Response {
    match s.driver.resources().await {
        Some(v) => Json(v).into_response(),
        None => stopped(),
    }
}

/// Where a follow stream stands.
struct Follow {
    state: ApiState,
    id: u64,
    states_sent: usize,
    next_line: usize,
    done: bool,
}

pub(super) async fn follow(
    State(s): State<ApiState>,
    Path(id): Path<u64>,
    Query(q): Query<FromQuery>,
) -> Response {
    if let Err(r) = one(&s, id).await {
        return r;
    }
    let start = Follow {
        state: s,
        id,
        states_sent: 0,
        next_line: q.from.unwrap_or(0),
        done: false,
    };
    let stream = futures::stream::unfold(start, |mut f| async move {
        if f.done {
            return None;
        }
        loop {
            let Ok(view) = one(&f.state, f.id).await else {
                return None;
            };
            let lines = f
                .state
                .driver
                .logs(f.id, f.next_line)
                .await
                .unwrap_or_default();
            let mut out = String::new();
            for l in lines {
                f.next_line = l.seq + 1;
                push_line(&mut out, &FollowItem::Log(l));
            }
            for (_, state, reason) in view.transitions.iter().skip(f.states_sent) {
                push_line(
                    &mut out,
                    &FollowItem::State {
                        state: *state,
                        reason: reason.clone(),
                    },
                );
            }
            f.states_sent = view.transitions.len();
            f.done = view.state.is_terminal();
            if !out.is_empty() || f.done {
                return Some((Ok::<_, std::convert::Infallible>(out), f));
            }
            tokio::time::sleep(FOLLOW_POLL).await;
        }
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response()
}

fn push_line(out: &mut String, item: &FollowItem) {
    if let Ok(json) = serde_json::to_string(item) {
        out.push_str(&json);
        out.push('\n');
    }
}
