//! The static build of the workspace's tests: one set of binaries that runs on the host
//! (`cargo xtask test`) and, unchanged, inside the VM, whose initramfs has no C library.

use crate::cmd;
use anyhow::{Context as _, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Naming the host triple makes the rustflags below apply to the test binaries only, not to
/// build scripts and proc-macros, which stay shared with ordinary builds.
const TARGET: &str = "x86_64-unknown-linux-gnu";

/// Static glibc, no debug info: smaller binaries, a smaller initramfs, a faster build.
const RUSTFLAGS: &str = "-C target-feature=+crt-static -C debuginfo=0 -C strip=debuginfo";

/// Every invocation uses the same package selection, so features unify the same way and the
/// host test run and the VM build share one set of artifacts.
const WORKSPACE: &[&str] = &["--workspace", "--exclude", "injector-ebpf"];

/// `cargo test` on the static build, with the arguments of `cargo test` in between.
fn static_test(args: &[&str]) -> Command {
    let mut c = cmd::cargo();
    c.env("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS", RUSTFLAGS)
        .arg("test")
        .args(WORKSPACE)
        .args(["--target", TARGET])
        .args(args);
    c
}

/// Every unit and integration test of the workspace on the host, one test at a time: root and
/// kernel tests share kernel state (interfaces, qdiscs, cgroups). All test binaries run even
/// after one fails, so a run reports every failure at once.
pub fn host_tests() -> Result<()> {
    cmd::run(&mut static_test(&[
        "--no-fail-fast",
        "--",
        "--test-threads=1",
    ]))
}

pub struct Exe {
    /// The test target's name: `kernel_netem` for injector/tests/kernel_netem.rs.
    pub name: String,
    pub path: PathBuf,
}

pub struct Built {
    /// Integration test binaries of the `injector` package.
    pub tests: Vec<Exe>,
    /// The `injector` binary itself.
    pub injector: PathBuf,
}

pub fn build() -> Result<Built> {
    let mut c = static_test(&["--no-run", "--message-format=json"]);
    eprintln!("$ {}", cmd::display(&c));
    let out = c
        .stderr(Stdio::inherit())
        .output()
        .context("cannot start cargo")?;
    if !out.status.success() {
        bail!("building the tests failed ({})", out.status);
    }
    let manifest = cmd::root().join("injector/Cargo.toml");
    let built = parse_artifacts(&String::from_utf8_lossy(&out.stdout), &manifest);
    let injector = built
        .injector
        .context("cargo built no injector binary (it is built for injector's integration tests)")?;
    Ok(Built {
        tests: built.tests,
        injector,
    })
}

struct Artifacts {
    tests: Vec<Exe>,
    injector: Option<PathBuf>,
}

/// Picks from cargo's JSON messages the integration tests and the binary of the package whose
/// manifest is `manifest`.
fn parse_artifacts(json_lines: &str, manifest: &Path) -> Artifacts {
    let mut a = Artifacts {
        tests: Vec::new(),
        injector: None,
    };
    for line in json_lines.lines() {
        let Ok(m) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if m["reason"] != "compiler-artifact" || m["manifest_path"].as_str() != manifest.to_str() {
            continue;
        }
        let Some(exe) = m["executable"].as_str() else {
            continue;
        };
        let kinds = &m["target"]["kind"];
        let name = m["target"]["name"].as_str().unwrap_or_default().to_string();
        let is_test_build = m["profile"]["test"] == true;
        if kinds == &serde_json::json!(["test"]) {
            a.tests.push(Exe {
                name,
                path: exe.into(),
            });
        } else if kinds == &serde_json::json!(["bin"]) && !is_test_build && name == "injector" {
            a.injector = Some(exe.into());
        }
    }
    a.tests.sort_by(|x, y| x.name.cmp(&y.name));
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_integration_tests_and_the_binary_of_the_package() {
        let m = "/w/injector/Cargo.toml";
        let msg = |kind: &str, name: &str, test: bool, manifest: &str, exe: &str| {
            serde_json::json!({
                "reason": "compiler-artifact", "manifest_path": manifest,
                "target": {"kind": [kind], "name": name}, "profile": {"test": test},
                "executable": if exe.is_empty() { serde_json::Value::Null } else { exe.into() },
            })
            .to_string()
        };
        let lines = [
            msg("test", "kernel_netem", true, m, "/t/deps/kernel_netem-1"),
            msg("test", "api", true, m, "/t/deps/api-2"),
            msg("bin", "injector", true, m, "/t/deps/injector-3"), // the bin's unit tests
            msg("bin", "injector", false, m, "/t/injector"),
            msg("lib", "injector", false, m, ""),
            msg(
                "test",
                "other",
                true,
                "/w/xtask/Cargo.toml",
                "/t/deps/other-4",
            ),
            r#"{"reason":"build-finished","success":true}"#.to_string(),
            "not json".to_string(),
        ]
        .join("\n");
        let a = parse_artifacts(&lines, Path::new(m));
        let names: Vec<_> = a.tests.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["api", "kernel_netem"]);
        assert_eq!(a.injector.as_deref(), Some(Path::new("/t/injector")));
    }
}
