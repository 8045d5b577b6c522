//! `POST /fetch/{peer_id}?name=<name>&out=<absolute path>[&max_bytes=N][&session_bytes_max=N]`:
//! fetches a file a peer serves over the transfer protocol into a file of this node's
//! machine, resuming from `<out>.part`; answers the [`FetchReport`].

use std::path::PathBuf;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use flotilla_core::PeerId;
use serde::Deserialize;

use super::{ApiState, error};
use crate::p2p::transfer::{self, FetchOptions, FetchReport, Refusal, TransferError};

/// The stream control `POST /fetch` opens transfer streams with.
#[derive(Clone)]
pub(super) struct Transfers(pub(super) libp2p_stream::Control);

impl std::fmt::Debug for Transfers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Transfers")
    }
}

/// The query of `POST /fetch/{peer_id}`.
#[derive(Clone, Debug, Deserialize)]
pub struct FetchQuery {
    /// The file's name on the peer's shelf.
    pub name: String,
    /// Where to put it: an absolute path on the node's machine.
    pub out: PathBuf,
    /// Largest file accepted ([`transfer::FETCH_BYTES_MAX_DEFAULT`] if absent).
    pub max_bytes: Option<u64>,
    /// Bytes fetched at most by this request; the rest is left for the next one.
    pub session_bytes_max: Option<u64>,
}

/// Handles `POST /fetch/{peer_id}`.
pub(super) async fn fetch(
    State(s): State<ApiState>,
    Path(peer): Path<String>,
    Query(q): Query<FetchQuery>,
) -> Response {
    let peer_id = match peer.parse::<PeerId>() {
        Ok(p) => p,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("`{peer}` is not a peer id ({e}); copy one from `flotilla peers`"),
            );
        }
    };
    if !q.out.is_absolute() {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "`out` is `{}`, a relative path; give an absolute path",
                q.out.display()
            ),
        );
    }
    let Some(Transfers(mut control)) = s.transfer.clone() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "this node does not run the transfer protocol",
        );
    };
    let opts = FetchOptions {
        max_bytes: q.max_bytes.unwrap_or(transfer::FETCH_BYTES_MAX_DEFAULT),
        session_bytes_max: q.session_bytes_max,
    };
    match transfer::fetch(&mut control, &s.rcmgr, peer_id, &q.name, &q.out, &opts).await {
        Ok(report) => Json::<FetchReport>(report).into_response(),
        Err(e) => error(status(&e), e.to_string()),
    }
}

fn status(e: &TransferError) -> StatusCode {
    match e {
        TransferError::BadPeer(_) => StatusCode::BAD_REQUEST,
        TransferError::Refused { refusal, .. } => match refusal {
            Refusal::BadName(_) => StatusCode::BAD_REQUEST,
            Refusal::NoSuchFile(_) => StatusCode::NOT_FOUND,
            Refusal::NotRequester(_) => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_GATEWAY,
        },
        TransferError::Limit(_) => StatusCode::SERVICE_UNAVAILABLE,
        TransferError::Busy { .. } => StatusCode::CONFLICT,
        TransferError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        TransferError::Open { .. } => StatusCode::NOT_FOUND,
        TransferError::Timeout => StatusCode::GATEWAY_TIMEOUT,
        TransferError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_GATEWAY,
    }
}
