//! Debian's stock kernel for the VM test: the package `linux-image-cloud-amd64` depends on
//! (bookworm: 6.1, every qdisc as a module), fetched with `apt-get download` (no change to
//! /etc or to the installed system) and unpacked once under target/vm/.

use crate::cmd;
use anyhow::{Context as _, Result, bail};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian's cloud flavour: smaller than the generic one (27 MB against 70 MB) and it ships
/// every module the product uses (sch_netem, sch_fq, cls_bpf, ...).
const META_PACKAGE: &str = "linux-image-cloud-amd64";

pub struct Kernel {
    /// The package it came from, e.g. linux-image-6.1.0-56-cloud-amd64.
    pub package: String,
    /// `uname -r` inside the VM.
    pub release: String,
    pub vmlinuz: PathBuf,
    /// The unpacked package: boot/ and lib/modules/<release>/.
    pub root: PathBuf,
}

impl Kernel {
    pub fn modules_dir(&self) -> PathBuf {
        self.root.join("lib/modules").join(&self.release)
    }
}

pub fn prepare(cache: &Path) -> Result<Kernel> {
    let package = resolve_package()?;
    let root = cache.join("kernel").join(&package);
    let ready = root.join(".ready");
    if !ready.exists() {
        let deb = download(&cache.join("debs"), &package)?;
        if root.exists() {
            fs::remove_dir_all(&root)?;
        }
        fs::create_dir_all(&root)?;
        cmd::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
        let release = release_in(&root)?;
        // The package leaves modules.dep to the installer's depmod; busybox's does it in a second.
        cmd::run(
            Command::new("busybox")
                .arg("depmod")
                .arg("-b")
                .arg(&root)
                .arg(&release),
        )?;
        fs::write(&ready, "")?;
    }
    let release = release_in(&root)?;
    let vmlinuz = root.join("boot").join(format!("vmlinuz-{release}"));
    if !vmlinuz.is_file() {
        bail!("{} has no {}", package, vmlinuz.display());
    }
    Ok(Kernel {
        package,
        release,
        vmlinuz,
        root,
    })
}

/// The versioned package behind the meta package, from apt's lists (refreshed once if stale).
fn resolve_package() -> Result<String> {
    let depends = || cmd::output(Command::new("apt-cache").args(["depends", META_PACKAGE]));
    let out = match depends() {
        Ok(out) => out,
        Err(_) => {
            cmd::run(Command::new("apt-get").arg("update"))?;
            depends()?
        }
    };
    out.lines()
        .find_map(|l| l.trim().strip_prefix("Depends: "))
        .filter(|p| p.starts_with("linux-image-"))
        .map(str::to_string)
        .with_context(|| format!("`apt-cache depends {META_PACKAGE}` names no kernel package"))
}

fn download(dir: &Path, package: &str) -> Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let find = || -> Result<Option<PathBuf>> {
        Ok(fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb"))
            }))
    };
    if let Some(deb) = find()? {
        return Ok(deb);
    }
    let get = || {
        cmd::run(
            Command::new("apt-get")
                // Root downloading into a directory _apt cannot enter: say so, instead of a warning.
                .args(["-o", "APT::Sandbox::User=root", "download", package])
                .current_dir(dir),
        )
    };
    if get().is_err() {
        // Stale lists point at a version the mirror no longer has.
        cmd::run(Command::new("apt-get").arg("update"))?;
        get()?;
    }
    find()?.with_context(|| {
        format!(
            "apt-get download {package} left no .deb in {}",
            dir.display()
        )
    })
}

fn release_in(root: &Path) -> Result<String> {
    let dir = root.join("lib/modules");
    let mut releases: Vec<String> = fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    match releases.len() {
        1 => Ok(releases.remove(0)),
        n => bail!(
            "expected one kernel release in {}, found {n}",
            dir.display()
        ),
    }
}

/// modules.dep as written by depmod: module path -> the paths it needs, relative to
/// lib/modules/<release>/.
pub struct ModuleDeps(BTreeMap<String, Vec<String>>);

impl ModuleDeps {
    pub fn parse(modules_dep: &str) -> Self {
        let map = modules_dep
            .lines()
            .filter_map(|l| {
                let (module, deps) = l.split_once(':')?;
                Some((
                    module.trim().to_string(),
                    deps.split_whitespace().map(str::to_string).collect(),
                ))
            })
            .collect();
        Self(map)
    }

    /// Every module path needed for `names` (module names) and everything under `dirs`, with
    /// their dependencies. A name the kernel lacks is an error that names it.
    pub fn closure(&self, names: &[&str], dirs: &[&str]) -> Result<BTreeSet<String>> {
        let mut todo: Vec<String> = Vec::new();
        for name in names {
            let path = self
                .0
                .keys()
                .find(|p| module_name(p) == *name)
                .with_context(|| format!("the stock kernel has no module {name}"))?;
            todo.push(path.clone());
        }
        todo.extend(
            self.0
                .keys()
                .filter(|p| dirs.iter().any(|d| p.starts_with(&format!("{d}/"))))
                .cloned(),
        );
        let mut out = BTreeSet::new();
        while let Some(p) = todo.pop() {
            if out.insert(p.clone()) {
                todo.extend(self.0.get(&p).into_iter().flatten().cloned());
            }
        }
        Ok(out)
    }

    /// modules.dep restricted to `keep`.
    pub fn render(&self, keep: &BTreeSet<String>) -> String {
        self.0
            .iter()
            .filter(|(m, _)| keep.contains(*m))
            .map(|(m, deps)| format!("{m}: {}\n", deps.join(" ")))
            .collect()
    }
}

/// `kernel/net/sched/sch_netem.ko` -> `sch_netem` (modprobe treats - and _ alike).
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.split(".ko").next().unwrap_or(file).replace('-', "_")
}

/// modules.alias lines (`alias <pattern> <module>`) whose module is among `keep`.
pub fn filter_aliases(modules_alias: &str, keep: &BTreeSet<String>) -> String {
    let names: BTreeSet<String> = keep.iter().map(|p| module_name(p)).collect();
    modules_alias
        .lines()
        .filter(|l| {
            l.rsplit(' ')
                .next()
                .is_some_and(|m| names.contains(&m.replace('-', "_")))
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "kernel/net/sched/sch_netem.ko:\n\
        kernel/net/sched/sch_fq_pie.ko: kernel/net/sched/sch_pie.ko\n\
        kernel/net/sched/sch_pie.ko:\n\
        kernel/drivers/net/veth.ko:\n\
        kernel/net/ipv4/inet_diag.ko:\n\
        kernel/net/ipv4/tcp_diag.ko: kernel/net/ipv4/inet_diag.ko\n\
        kernel/fs/ext4-extra.ko:\n";

    #[test]
    fn closure_follows_dependencies_and_whole_directories() {
        let deps = ModuleDeps::parse(DEP);
        let got = deps
            .closure(&["tcp_diag", "veth"], &["kernel/net/sched"])
            .unwrap();
        let want: BTreeSet<String> = [
            "kernel/drivers/net/veth.ko",
            "kernel/net/ipv4/inet_diag.ko",
            "kernel/net/ipv4/tcp_diag.ko",
            "kernel/net/sched/sch_fq_pie.ko",
            "kernel/net/sched/sch_netem.ko",
            "kernel/net/sched/sch_pie.ko",
        ]
        .map(String::from)
        .into();
        assert_eq!(got, want);
        assert_eq!(
            deps.render(&got).lines().find(|l| l.contains("tcp_diag")),
            Some("kernel/net/ipv4/tcp_diag.ko: kernel/net/ipv4/inet_diag.ko")
        );
        assert!(!deps.render(&got).contains("ext4"));
    }

    #[test]
    fn a_module_the_kernel_lacks_is_named_in_the_error() {
        let deps = ModuleDeps::parse(DEP);
        let err = deps.closure(&["sch_cake"], &[]).unwrap_err();
        assert!(err.to_string().contains("sch_cake"), "{err}");
    }

    #[test]
    fn aliases_are_kept_only_for_shipped_modules() {
        let keep: BTreeSet<String> = ["kernel/drivers/net/veth.ko".to_string()].into();
        let aliases = "alias rtnl-link-veth veth\nalias fs-ext4 ext4\n";
        assert_eq!(
            filter_aliases(aliases, &keep),
            "alias rtnl-link-veth veth\n"
        );
        assert_eq!(module_name("kernel/fs/ext4-extra.ko.xz"), "ext4_extra");
    }
}
