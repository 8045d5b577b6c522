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
//! | `POST /resources/onboard` (body: a [`Capacity`] as JSON, e.g. `{"millicores": 1500, "memory_mb": 2048}`, missing fields 0) | [`ResourcesView`] after offering that much more; 409 beyond the registered capacity |
//! | `POST /resources/offboard` (body: a [`Capacity`]) | [`ResourcesView`] after offering that much less; 409 (naming the allocations) if allocations hold it |
//! | `PUT /resources/onboarded` (body: a [`Capacity`]) | [`ResourcesView`] after offering exactly that; 409 as above |
//!
//! A change applies to the live ledger at once and, when the API has the node's store
//! ([`ApiServer::with_store`](super::ApiServer::with_store)), is kept there for the next
//! start: all of it or nothing (a change the store cannot keep is undone, 500). The store
//! must hold a measurement (`flotilla onboard` makes one), else 409.

use std::path::PathBuf;
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use flotilla_core::PeerId;
use flotilla_core::capacity::Capacity;
use flotilla_core::deployment::DeployState;
use flotilla_core::job::JobSpec;
use flotilla_core::jobs::{DeploymentView, LogLine};
use serde::{Deserialize, Serialize};

use super::{ApiState, error, stopped};
use crate::onboarding::{Onboarding, now_us};
use crate::store::Store;
use crate::views::resources::{OnboardChange, ResourcesView};

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

pub(super) async fn onboard(State(s): State<ApiState>, body: Bytes) -> Response {
    change_onboarding(s, body, OnboardChange::Onboard).await
}

pub(super) async fn offboard(State(s): State<ApiState>, body: Bytes) -> Response {
    change_onboarding(s, body, OnboardChange::Offboard).await
}

pub(super) async fn set_onboarded(State(s): State<ApiState>, body: Bytes) -> Response {
    change_onboarding(s, body, OnboardChange::Set).await
}

/// Applies the change made of the body's capacity to the live ledger, and keeps it in the
/// store (undoing it if the store cannot).
async fn change_onboarding(
    s: ApiState,
    body: Bytes,
    make: impl FnOnce(Capacity) -> OnboardChange,
) -> Response {
    let capacity: Capacity = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "the body must be a capacity as JSON, e.g. {{\"millicores\": 1500, \
                     \"memory_mb\": 2048, \"disk_gb\": 10, \"gpus\": 0}} (missing fields are \
                     0): {e}"
                ),
            );
        }
    };
    let _one_at_a_time = s.onboarding.lock().await;
    let stored = match &s.store {
        Some(path) => match read_onboarding(path.clone()).await {
            Ok(Some(o)) => Some((path.clone(), o)),
            Ok(None) => {
                return error(
                    StatusCode::CONFLICT,
                    "this machine was never measured, so there is nothing to keep the change \
                     with; run `flotilla onboard` (it measures the machine), then restart the \
                     node",
                );
            }
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
        },
        None => None,
    };
    let before = match s.driver.resources().await {
        Some(v) => v.onboarded,
        None => return stopped(),
    };
    let view = match s.driver.onboard(make(capacity)).await {
        Some(Ok(v)) => v,
        Some(Err(why)) => return error(StatusCode::CONFLICT, why),
        None => return stopped(),
    };
    if let Some((path, mut o)) = stored {
        o.onboarded = view.onboarded;
        if let Err(e) = write_onboarding(path, o).await {
            let undone = s.driver.onboard(OnboardChange::Set(before)).await;
            let state = match undone {
                Some(Ok(_)) => "the live ledger is back as it was",
                _ => "the live ledger keeps the change until the node restarts",
            };
            return error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}; {state}"));
        }
    }
    Json::<ResourcesView>(view).into_response()
}

async fn read_onboarding(path: PathBuf) -> Result<Option<Onboarding>, String> {
    tokio::task::spawn_blocking(move || {
        let store = Store::open(&path).map_err(|e| format!("cannot open the store: {e}"))?;
        store
            .onboarding()
            .map_err(|e| format!("cannot read the onboarding from the store: {e}"))
    })
    .await
    .map_err(|e| format!("reading the store failed: {e}"))?
}

async fn write_onboarding(path: PathBuf, o: Onboarding) -> Result<(), String> {
    tokio::task::spawn_blocking(move || {
        let mut store = Store::open(&path).map_err(|e| format!("cannot open the store: {e}"))?;
        store
            .set_onboarding(&o, now_us())
            .map_err(|e| format!("cannot keep the change in the store: {e}"))
    })
    .await
    .map_err(|e| format!("writing the store failed: {e}"))?
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::tests::Idle;
    use crate::clock::{Clock, TokioClock};
    use crate::driver::{Driver, NoObserver};
    use crate::onboarding::Registered;
    use crate::store::STORE_FILE;
    use flotilla_core::capacity::AllocationId;
    use flotilla_core::{Config, Keypair, Node, Resources, SeedTree};

    fn cap(millicores: u64, memory_mb: u64, disk_gb: u64) -> Capacity {
        Capacity {
            millicores,
            memory_mb,
            disk_gb,
            gpus: 0,
        }
    }

    async fn serve(handle: crate::driver::DriverHandle, store: &std::path::Path) -> String {
        crate::api::tests::serve_with_store(handle, Some(store)).await
    }

    /// Sends `body` to `path` with `method`; the status and the body of the answer.
    fn send(base: &str, method: &str, path: &str, body: &str) -> (u16, String) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let url = format!("{base}{path}");
        let sent = match method {
            "PUT" => agent.put(&url).content_type("application/json").send(body),
            "POST" => agent.post(&url).content_type("application/json").send(body),
            _ => agent.get(&url).call(),
        };
        let mut response = sent.unwrap();
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_string().unwrap())
    }

    fn refusal(answer: &(u16, String), code: u16, needles: &[&str]) {
        assert_eq!(answer.0, code, "{}", answer.1);
        let e: super::super::ErrorReply = serde_json::from_str(&answer.1).unwrap();
        for needle in needles {
            assert!(e.error.contains(needle), "{needle:?} not in {}", e.error);
        }
    }

    fn view(answer: &(u16, String)) -> ResourcesView {
        assert_eq!(answer.0, 200, "{}", answer.1);
        serde_json::from_str(&answer.1).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn onboarding_changes_the_live_ledger_and_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store_path = dir.path().join(STORE_FILE);
        let registered = Registered {
            capacity: cap(4000, 4096, 10),
            cpu_score: 100,
            measured_at_us: 1,
        };
        Store::open(&store_path)
            .unwrap()
            .set_onboarding(
                &Onboarding {
                    registered,
                    onboarded: cap(2000, 2048, 0),
                },
                1,
            )
            .unwrap();
        let config = Config {
            resources: Resources {
                cores: 4,
                memory_mb: 4096,
                disk_gb: 10,
                gpus: 0,
            },
            ..Config::default()
        };
        let clock = TokioClock::system();
        let keypair = Keypair::generate(&mut SeedTree::new(1).rng());
        let mut node = Node::new(config, keypair, SeedTree::new(2), clock.now()).unwrap();
        // Two cores onboarded, one of them held by a running job.
        node.jobs_mut().onboard(cap(2000, 2048, 0)).unwrap();
        let requester = Keypair::generate(&mut SeedTree::new(3).rng()).peer_id();
        let spec = JobSpec::from_toml_str(
            "image = \"busybox\"\nduration_s = 60\n[resources]\ncores = 1\nmemory_mb = 512\n",
            std::path::Path::new("job.toml"),
        )
        .unwrap();
        node.jobs_mut()
            .restore_running(clock.now(), AllocationId(7), requester, 3, spec, &[])
            .unwrap();
        let (driver, handle) = Driver::new(node, Idle, clock, NoObserver);
        tokio::spawn(driver.run());
        let base = serve(handle.clone(), &store_path).await;
        let unmeasured = serve(handle, &dir.path().join("empty.sqlite")).await;

        let answers = tokio::task::spawn_blocking(move || {
            [
                send(
                    &base,
                    "POST",
                    "/resources/onboard",
                    r#"{"millicores": 1000}"#,
                ),
                send(
                    &base,
                    "POST",
                    "/resources/offboard",
                    r#"{"millicores": 2500}"#,
                ),
                send(
                    &base,
                    "PUT",
                    "/resources/onboarded",
                    r#"{"millicores": 500, "memory_mb": 4096}"#,
                ),
                send(
                    &base,
                    "POST",
                    "/resources/onboard",
                    r#"{"millicores": 9000}"#,
                ),
                send(&base, "POST", "/resources/onboard", r#"{"cores": 1}"#),
                send(&base, "POST", "/resources/offboard", "half"),
                send(
                    &unmeasured,
                    "POST",
                    "/resources/onboard",
                    r#"{"gpus": 0, "disk_gb": 1}"#,
                ),
                // Fewer cores and less memory, more disk: at once.
                send(
                    &base,
                    "PUT",
                    "/resources/onboarded",
                    r#"{"millicores": 1000, "memory_mb": 1024, "disk_gb": 5}"#,
                ),
                send(&base, "GET", "/resources", ""),
            ]
        })
        .await
        .unwrap();
        let [
            more,
            below_use,
            set_below_use,
            beyond,
            unknown_field,
            not_json,
            never_measured,
            set,
            after,
        ] = answers;

        assert_eq!(view(&more).onboarded, cap(3000, 2048, 0));
        assert_eq!(view(&more).available, cap(2000, 1536, 0));
        let held = format!("allocation 7 (running, requester {requester}");
        refusal(&below_use, 409, &["cannot offboard", "in use", &held]);
        refusal(
            &set_below_use,
            409,
            &[
                "cannot offer only",
                "millicores: 1000 in use, 500 asked",
                &held,
            ],
        );
        refusal(&beyond, 409, &["beyond registered", "when it started"]);
        refusal(&unknown_field, 400, &["`cores`", "millicores"]);
        refusal(&not_json, 400, &["capacity as JSON"]);
        refusal(
            &never_measured,
            409,
            &["never measured", "flotilla onboard"],
        );
        assert_eq!(view(&set).onboarded, cap(1000, 1024, 5));
        // Refused changes changed nothing; the last one is live and stored.
        let live = view(&after);
        assert_eq!(live.onboarded, cap(1000, 1024, 5));
        assert_eq!(live.allocated, cap(1000, 512, 0));
        let stored = Store::open(&store_path)
            .unwrap()
            .onboarding()
            .unwrap()
            .unwrap();
        assert_eq!(stored.onboarded, cap(1000, 1024, 5));
        assert_eq!(stored.registered, registered);
        assert_eq!(
            Store::open(&dir.path().join("empty.sqlite"))
                .unwrap()
                .onboarding()
                .unwrap(),
            None
        );
    }
}
