//! The one error type of the API. Every failure a client can cause ends up
//! here and is written once, in ToxiProxy's wire form (see api/mod.rs).

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }
    pub fn bad_body(detail: impl fmt::Display) -> Self {
        Self::new(400, format!("bad request body: {detail}"))
    }
    pub fn missing_field(field: &str) -> Self {
        Self::new(400, format!("missing required field: {field}"))
    }
    pub fn proxy_not_found() -> Self {
        Self::new(404, "proxy not found")
    }
    pub fn proxy_exists() -> Self {
        Self::new(409, "proxy already exists")
    }
    pub fn invalid_stream() -> Self {
        Self::new(
            400,
            "stream was invalid, can be either upstream or downstream",
        )
    }
    pub fn invalid_toxic_type() -> Self {
        Self::new(400, "invalid toxic type")
    }
    pub fn toxic_exists() -> Self {
        Self::new(409, "toxic already exists")
    }
    pub fn toxic_not_found() -> Self {
        Self::new(404, "toxic not found")
    }
    /// What ToxiProxy reports as a raw Go error (bind and address failures).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, message)
    }
    /// A fault this kernel cannot apply: names the missing feature.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(501, message)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.status)
    }
}

impl std::error::Error for ApiError {}
