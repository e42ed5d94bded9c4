//! `cargo xtask setup`: installs what a fresh Debian or Ubuntu machine lacks to build and test
//! injector, then checks that the eBPF toolchain agrees with itself. Each step first looks at
//! what is there, so a second run only reads versions and finishes in well under two seconds.

use crate::cmd;
use anyhow::{Context as _, Result, bail};
use std::process::Command;
use std::time::Instant;

/// Pinned: bpf-linker releases have broken BTF before (bpf-linker#318).
pub const BPF_LINKER_VERSION: &str = "0.13.0";

/// Debian packages the tests, the VM test and the script checks use. LLVM's packages are added
/// with the major version of nightly rustc's LLVM, which bpf-linker must match.
const TOOLS: &[&str] = &[
    "iproute2",
    "iptables",
    "iperf3",
    "dnsutils",
    "dnsmasq-base",
    "bpftool",
    "socat",
    "curl",
    "ethtool",
    // stock-kernel VM test
    "qemu-system-x86",
    "qemu-utils",
    "busybox-static",
    "cpio",
    "xz-utils",
    "e2fsprogs",
    "debootstrap",
    // checks of the Vagrantfile and the shell scripts
    "ruby",
    "shellcheck",
];

/// Components each toolchain needs: nightly builds the eBPF crate (`-Z build-std=core` needs
/// rust-src) and lints it; stable builds and lints everything else.
const COMPONENTS: &[(&str, &[&str])] = &[
    ("nightly", &["rust-src", "clippy"]),
    ("stable", &["clippy", "rustfmt"]),
];

pub fn setup() -> Result<()> {
    let start = Instant::now();
    rust_components()?;
    let llvm = nightly_llvm()?;
    apt_packages(llvm.major)?;
    bpf_linker(llvm.major)?;
    let linker_llvm = bpf_linker_llvm_major()?;
    println!(
        "setup: nightly rustc uses LLVM {}, bpf-linker {BPF_LINKER_VERSION} uses LLVM {linker_llvm}",
        llvm.full
    );
    if linker_llvm != llvm.major {
        bail!(
            "bpf-linker is built against LLVM {linker_llvm} but nightly rustc emits LLVM {} bitcode; \
             eBPF objects would fail to link. Fix:\n  apt-get install -y llvm-{m}-dev libclang-{m}-dev libpolly-{m}-dev\n  \
             LLVM_PREFIX=/usr/lib/llvm-{m} cargo install bpf-linker --locked --force --version {BPF_LINKER_VERSION} \
             --no-default-features --features llvm-{m}",
            llvm.full,
            m = llvm.major
        );
    }
    println!("setup: ready ({:.1} s)", start.elapsed().as_secs_f64());
    Ok(())
}

fn rust_components() -> Result<()> {
    for (toolchain, wanted) in COMPONENTS {
        let listed = Command::new("rustup")
            .args(["component", "list", "--installed", "--toolchain", toolchain])
            .env_remove("RUSTUP_TOOLCHAIN")
            .output()
            .context("rustup is needed (https://rustup.rs)")?;
        if !listed.status.success() {
            println!("setup: installing the {toolchain} toolchain");
            let mut c = Command::new("rustup");
            c.args(["toolchain", "install", toolchain, "--profile", "minimal"]);
            for w in *wanted {
                c.args(["--component", w]);
            }
            cmd::run(&mut c)?;
            continue;
        }
        let installed = String::from_utf8_lossy(&listed.stdout);
        let missing = missing_components(&installed, wanted);
        if missing.is_empty() {
            println!("setup: {toolchain} has {}", wanted.join(", "));
        } else {
            cmd::run(
                Command::new("rustup")
                    .args(["component", "add", "--toolchain", toolchain])
                    .args(&missing),
            )?;
        }
    }
    Ok(())
}

/// Components of `wanted` absent from `rustup component list --installed` output, whose lines
/// are either bare names (`rust-src`) or names with the host triple (`clippy-x86_64-...`).
fn missing_components<'a>(installed: &str, wanted: &[&'a str]) -> Vec<&'a str> {
    wanted
        .iter()
        .filter(|w| {
            !installed.lines().any(|l| {
                let l = l.trim();
                l == **w
                    || l.strip_prefix(**w)
                        .is_some_and(|rest| rest.starts_with("-x86_64"))
            })
        })
        .copied()
        .collect()
}

pub struct Llvm {
    pub major: u32,
    pub full: String,
}

fn nightly_llvm() -> Result<Llvm> {
    let out = cmd::output(
        Command::new("rustc")
            .args(["+nightly", "-vV"])
            .env_remove("RUSTUP_TOOLCHAIN"),
    )?;
    parse_llvm(&out).context("`rustc +nightly -vV` prints no LLVM version")
}

fn parse_llvm(rustc_vv: &str) -> Option<Llvm> {
    let full = rustc_vv
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))?
        .trim()
        .to_string();
    let major = full.split('.').next()?.parse().ok()?;
    Some(Llvm { major, full })
}

fn apt_packages(llvm_major: u32) -> Result<()> {
    let mut wanted: Vec<String> = ["llvm", "libclang", "libpolly"]
        .iter()
        .map(|p| format!("{p}-{llvm_major}-dev"))
        .collect();
    wanted.extend(TOOLS.iter().map(|s| s.to_string()));
    if cmd::which("dpkg-query").is_none() {
        println!(
            "setup: not a Debian or Ubuntu system; install these yourself: {}",
            wanted.join(" ")
        );
        return Ok(());
    }
    // dpkg-query exits 1 when it knows none of some names; what it prints is still right.
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${Package} ${db:Status-Abbrev}\n"])
        .args(&wanted)
        .output()
        .context("dpkg-query")?;
    let missing = missing_packages(&String::from_utf8_lossy(&out.stdout), &wanted);
    if missing.is_empty() {
        println!("setup: all {} Debian packages present", wanted.len());
        return Ok(());
    }
    println!("setup: installing {}", missing.join(" "));
    cmd::run(
        Command::new("apt-get")
            .args(["-q", "update"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    cmd::run(
        Command::new("apt-get")
            .args(["-q", "install", "-y"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// Packages of `wanted` that `dpkg-query -W -f '${Package} ${db:Status-Abbrev}\n'` does not
/// report as installed ("ii").
fn missing_packages(dpkg_out: &str, wanted: &[String]) -> Vec<String> {
    wanted
        .iter()
        .filter(|w| {
            !dpkg_out.lines().any(|l| {
                let mut f = l.split_whitespace();
                f.next() == Some(w.as_str()) && f.next() == Some("ii")
            })
        })
        .cloned()
        .collect()
}

fn bpf_linker(llvm_major: u32) -> Result<()> {
    let have = Command::new("bpf-linker")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if have == format!("bpf-linker {BPF_LINKER_VERSION}") {
        return Ok(());
    }
    println!(
        "setup: building bpf-linker {BPF_LINKER_VERSION} against LLVM {llvm_major} (found: {})",
        if have.is_empty() { "none" } else { &have }
    );
    cmd::run(
        cmd::cargo()
            .args([
                "install",
                "bpf-linker",
                "--locked",
                "--force",
                "--version",
                BPF_LINKER_VERSION,
            ])
            .args([
                "--no-default-features",
                "--features",
                &format!("llvm-{llvm_major}"),
            ])
            .env("LLVM_PREFIX", format!("/usr/lib/llvm-{llvm_major}")),
    )?;
    if cmd::which("bpf-linker").is_none() {
        bail!("bpf-linker was installed but is not on PATH: add ~/.cargo/bin to PATH");
    }
    Ok(())
}

/// The LLVM major bpf-linker links: from its shared libLLVM, else from the feature cargo
/// installed it with (a statically linked build).
fn bpf_linker_llvm_major() -> Result<u32> {
    let path = cmd::which("bpf-linker").context("bpf-linker is not on PATH")?;
    let ldd = cmd::output(Command::new("ldd").arg(&path)).unwrap_or_default();
    if let Some(m) = llvm_major_from_ldd(&ldd) {
        return Ok(m);
    }
    let home = std::env::var("CARGO_HOME")
        .or_else(|_| std::env::var("HOME").map(|h| format!("{h}/.cargo")))
        .context("neither CARGO_HOME nor HOME is set")?;
    let crates = std::fs::read_to_string(format!("{home}/.crates2.json")).unwrap_or_default();
    llvm_major_from_crates2(&crates).context(
        "cannot tell which LLVM bpf-linker uses (not in ldd, not in ~/.cargo/.crates2.json)",
    )
}

fn llvm_major_from_ldd(ldd: &str) -> Option<u32> {
    ldd.lines().find_map(|l| {
        let l = l.trim();
        let rest = l
            .strip_prefix("libLLVM.so.")
            .or_else(|| l.strip_prefix("libLLVM-"))?;
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    })
}

fn llvm_major_from_crates2(json: &str) -> Option<u32> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let (_, install) = v["installs"]
        .as_object()?
        .iter()
        .find(|(k, _)| k.starts_with("bpf-linker "))?;
    install["features"]
        .as_array()?
        .iter()
        .find_map(|f| f.as_str()?.strip_prefix("llvm-")?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llvm_version_comes_from_rustc_verbose_output() {
        let out = "rustc 1.97.0-nightly (e50aa6fba 2026-05-19)\nhost: x86_64-unknown-linux-gnu\nLLVM version: 22.1.4\n";
        let l = parse_llvm(out).unwrap();
        assert_eq!((l.major, l.full.as_str()), (22, "22.1.4"));
        assert!(parse_llvm("rustc 1.97.0\n").is_none());
    }

    #[test]
    fn linker_llvm_major_from_ldd_or_cargo_install_record() {
        let ldd = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibLLVM.so.22.1 => /usr/lib/llvm-22/lib/libLLVM.so.22.1 (0x00007f)\n";
        assert_eq!(llvm_major_from_ldd(ldd), Some(22));
        assert_eq!(
            llvm_major_from_ldd("\tlibLLVM-17.so => /x (0x1)\n"),
            Some(17)
        );
        assert_eq!(llvm_major_from_ldd("\tlibc.so.6 => /lib/libc.so.6\n"), None);
        let json = r#"{"installs":{"bpf-linker 0.13.0 (registry+https://github.com/rust-lang/crates.io-index)":{"features":["llvm-21"]}}}"#;
        assert_eq!(llvm_major_from_crates2(json), Some(21));
        assert_eq!(llvm_major_from_crates2(r#"{"installs":{}}"#), None);
    }

    #[test]
    fn only_packages_dpkg_reports_installed_count_as_present() {
        let out = "curl ii \nsocat un \niperf3 rc \n";
        let wanted: Vec<String> = ["curl", "socat", "iperf3", "ruby"].map(String::from).into();
        assert_eq!(missing_packages(out, &wanted), ["socat", "iperf3", "ruby"]);
    }

    #[test]
    fn components_match_with_or_without_host_triple() {
        let installed =
            "cargo-x86_64-unknown-linux-gnu\nclippy-x86_64-unknown-linux-gnu\nrust-src\n";
        assert!(missing_components(installed, &["rust-src", "clippy"]).is_empty());
        assert_eq!(
            missing_components(installed, &["rustfmt", "rust-src"]),
            ["rustfmt"]
        );
        // "rust" must not be satisfied by "rust-src".
        assert_eq!(missing_components(installed, &["rust"]), ["rust"]);
    }
}
