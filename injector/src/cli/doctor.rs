//! `injector doctor`: what this kernel can do, feature by feature, and
//! which faults therefore work here.

use std::io::Write;

use crate::kernel::features;

pub async fn doctor(json: bool) -> anyhow::Result<()> {
    // The probes create a scratch namespace and load the BPF object:
    // blocking work, kept off the runtime threads.
    let report = tokio::task::spawn_blocking(features::collect).await?;
    let text = if json {
        serde_json::to_string_pretty(&report)? + "\n"
    } else {
        features::render(&report)
    };
    // A closed pipe (`doctor | head`) is not an error worth a panic.
    let _ = std::io::stdout().write_all(text.as_bytes());
    Ok(())
}
