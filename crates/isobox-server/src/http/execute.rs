//! `/execute`, `/validate`, and the streamed runs `/execute/stream` (SSE) and `/execute/ws`
//! (WebSocket): JSON in, the API layer, JSON (or events) out.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use isobox_core::ExecuteRequest;

use crate::api::run::{self, Via};
use crate::api::{authorize, Action, ApiError, Authorized, Caller, ErrorKind};
use crate::state::App;

/// The request of the body, validated and authorized for `action`.
async fn authorized(
    app: &App,
    caller: &Caller,
    action: Action,
    headers: &HeaderMap,
    body: Body,
) -> Result<Authorized, ApiError> {
    let req: ExecuteRequest = super::body::json(
        headers,
        body,
        app.config.max_body_bytes,
        app.config.http.body_timeout,
    )
    .await?;
    authorize(app, caller, action, req).await
}

pub async fn execute(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let auth = authorized(&app, &caller, Action::Execute, &headers, body).await?;
    let result = run::execute(&app, &caller, auth, Via::Rest).await?;
    Ok(Json(result).into_response())
}

pub async fn validate(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let auth = authorized(&app, &caller, Action::Validate, &headers, body).await?;
    Ok(Json(run::validate(&app, auth).await?).into_response())
}

/// Bad input is a plain 4xx before anything streams.
pub async fn execute_stream(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let auth = authorized(&app, &caller, Action::Execute, &headers, body).await?;
    let run = run::stream(&app, &caller, auth, Via::Rest, false);
    Ok(super::stream::sse(app, run))
}

pub async fn execute_ws(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    match ws {
        Ok(ws) => super::stream::websocket(app, ws, caller),
        Err(_) => ApiError::new(
            ErrorKind::UpgradeRequired,
            "this endpoint speaks WebSocket only",
        )
        .into_response(),
    }
}
