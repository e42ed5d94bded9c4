//! Builds the eBPF programs with aya-build and leaves the object in OUT_DIR,
//! where src/kernel/bpf.rs embeds it.

use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = packages
        .into_iter()
        .find(|p| p.name.as_str() == "injector-ebpf")
        .ok_or_else(|| anyhow!("injector-ebpf package not found"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", ebpf.manifest_path))?;
    // injector-common is compiled into the eBPF object too.
    println!("cargo:rerun-if-changed={}", root_dir.join("src"));
    println!(
        "cargo:rerun-if-changed={}",
        root_dir.join("../injector-common/src")
    );
    aya_build::build_ebpf(
        [Package {
            name: ebpf.name.as_str(),
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        Toolchain::default(),
    )
}
