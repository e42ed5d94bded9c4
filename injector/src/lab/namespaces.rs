//! The lab without Docker (being written).

use std::path::PathBuf;

use super::plan::Lab;

pub fn state_dir(name: &str) -> PathBuf {
    PathBuf::from(format!("/run/injector/lab/{name}"))
}

pub fn subnet(_name: &str) -> Option<String> {
    None
}

pub fn states(_name: &str) -> Vec<(String, String)> {
    Vec::new()
}

pub async fn up(_lab: &Lab) -> anyhow::Result<Vec<String>> {
    anyhow::bail!("the namespace backend is not written yet")
}

pub async fn down(_name: &str) -> anyhow::Result<Vec<String>> {
    Ok(Vec::new())
}
