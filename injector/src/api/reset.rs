//! POST /reset: every proxy enabled again and stripped of its toxics; the
//! body is ignored.

use axum::response::Response;

use super::error::{WireError, no_content};
use crate::engine::Engine;

pub async fn reset(engine: &Engine) -> Result<Response, WireError> {
    engine.reset().await?;
    Ok(no_content())
}
