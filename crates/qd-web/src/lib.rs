//! The HTTP face of quietdesk (axum). Today it serves the operational endpoints that the
//! container stack needs (`/healthz`); the staff inbox and the JSON API build on the same
//! [`router`] and [`AppState`]. Only this crate names axum.

use std::future::Future;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use qd_search::SearchIndex;
use qd_store::Store;

pub use axum::Router;

/// What every handler may reach.
#[derive(Clone)]
pub struct AppState {
    store: Store,
    index: SearchIndex,
}

impl AppState {
    pub fn new(store: Store, index: SearchIndex) -> AppState {
        AppState { store, index }
    }
}

/// The whole application as a function of its state (tests drive it without a socket).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .with_state(state)
}

/// Liveness and readiness: the database answers and the index can be read.
async fn healthz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if state.store.ping().await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n");
    }
    if state.index.num_docs().is_err() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "search index unavailable\n",
        );
    }
    (StatusCode::OK, "ok\n")
}

/// Serves `app` on `listener` until `shutdown` resolves, then finishes open requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn healthz_reports_ok_when_store_and_index_answer() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("q.db").display());
        let store = Store::connect(&url).await.unwrap();
        let index = SearchIndex::create_in_ram().unwrap();
        let app = router(AppState::new(store, index));
        let res = app
            .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
}
