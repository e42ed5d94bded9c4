//! GET /events: fault changes as server-sent events, one `data:` line of
//! JSON per change (`{"kind","proxy","toxic","at_ms"}`), named by kind;
//! `fired` events add `packets_per_s`, `bytes_per_s` and `matched_per_s`
//! (activity.rs).

use std::{convert::Infallible, time::Duration};

use axum::response::{
    IntoResponse, Response,
    sse::{Event as SseEvent, KeepAlive, Sse},
};
use futures::{Stream, StreamExt};
use tokio::sync::broadcast::error::RecvError;

use crate::engine::{Engine, Event, EventKind};

fn name(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Added => "added",
        EventKind::Updated => "updated",
        EventKind::Removed => "removed",
        EventKind::Expired => "expired",
        EventKind::Fired => "fired",
    }
}

fn stream(engine: &Engine) -> impl Stream<Item = Result<SseEvent, Infallible>> + use<> {
    let rx = engine.subscribe();
    futures::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(ev) => return Some((ev, rx)),
                // A slow reader skips what it missed rather than stalling.
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            }
        }
    })
    .map(|ev: Event| {
        let data = serde_json::to_string(&ev).unwrap_or_default();
        Ok(SseEvent::default().event(name(ev.kind)).data(data))
    })
}

pub fn events(engine: &Engine) -> Response {
    Sse::new(stream(engine))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
