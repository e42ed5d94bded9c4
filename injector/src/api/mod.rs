//! The ToxiProxy-compatible HTTP API.
