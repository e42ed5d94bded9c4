//! The lab's one image, built without a registry: a root filesystem that
//! holds nothing but this very binary (it plays every service, see
//! services/) and the shared libraries it runs with, imported as a Docker
//! image. Built once per binary (the tag is a hash of the files' identity:
//! path, inode, size, modification time) in seconds; works offline.

use std::{
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};

use super::docker::{Docker, IMAGE_LABEL};

pub const REPO: &str = "injector-lab";
/// Where the binary sits inside the image.
pub const BINARY: &str = "/injector";

/// A file of the root filesystem: its path in the image, where it comes
/// from on the host, and what identifies that file's content.
struct Entry {
    path: String,
    source: PathBuf,
    identity: String,
}

impl Entry {
    fn new(path: &str, source: &Path) -> anyhow::Result<Entry> {
        let m =
            fs::metadata(source).with_context(|| format!("cannot read {}", source.display()))?;
        Ok(Entry {
            path: path.to_string(),
            source: source.to_path_buf(),
            identity: format!(
                "{}:{}:{}:{}.{}",
                m.dev(),
                m.ino(),
                m.size(),
                m.mtime(),
                m.mtime_nsec()
            ),
        })
    }
}

/// What the image needs to run the binary, and where.
pub struct Rootfs {
    entries: Vec<Entry>,
    /// Directories holding the libraries, for LD_LIBRARY_PATH.
    pub lib_dirs: Vec<String>,
}

/// PT_INTERP of a 64-bit little-endian ELF: the dynamic loader it names,
/// or None for a static binary.
fn interpreter(elf: &[u8]) -> anyhow::Result<Option<String>> {
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        bail!("not a 64-bit little-endian ELF binary");
    }
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let u64_at = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&elf[o..o + 8]);
        u64::from_le_bytes(b) as usize
    };
    let phoff = u64_at(0x20);
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        if ph + 56 > elf.len() {
            bail!("truncated ELF program headers");
        }
        const PT_INTERP: u32 = 3;
        let kind = u32::from_le_bytes([elf[ph], elf[ph + 1], elf[ph + 2], elf[ph + 3]]);
        if kind == PT_INTERP {
            let (off, size) = (u64_at(ph + 8), u64_at(ph + 32));
            let raw = elf
                .get(off..off + size)
                .context("PT_INTERP points outside the file")?;
            let path = String::from_utf8_lossy(raw)
                .trim_end_matches('\0')
                .to_string();
            return Ok(Some(path));
        }
    }
    Ok(None)
}

/// The shared objects this process has mapped: exactly the libraries the
/// binary was linked with (glibc 2.34+ has DNS and files NSS built in, and
/// the services never dlopen anything).
fn mapped_libraries(maps: &str, exe: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for line in maps.lines() {
        let Some(path) = line.split_whitespace().nth(5) else {
            continue;
        };
        let p = PathBuf::from(path);
        let is_lib = p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.contains(".so"));
        if path.starts_with('/') && is_lib && p != exe && !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

impl Rootfs {
    /// This running binary and its libraries.
    pub fn of_current_exe() -> anyhow::Result<Rootfs> {
        let exe = fs::read_link("/proc/self/exe").context("cannot find this binary")?;
        // The ELF header and program headers sit at the start of the file.
        let mut head = vec![0u8; 64 * 1024];
        let n = {
            use std::io::Read as _;
            let mut f = fs::File::open("/proc/self/exe")
                .with_context(|| format!("cannot read {}", exe.display()))?;
            f.read(&mut head)?
        };
        head.truncate(n);
        let interp = interpreter(&head)?;
        let mut entries = vec![Entry::new(BINARY, Path::new("/proc/self/exe"))?];
        let mut lib_dirs = Vec::new();
        if let Some(interp) = &interp {
            let maps = fs::read_to_string("/proc/self/maps").context("/proc/self/maps")?;
            for lib in mapped_libraries(&maps, &exe) {
                if let Some(dir) = lib.parent().and_then(|d| d.to_str())
                    && !lib_dirs.iter().any(|d| d == dir)
                {
                    lib_dirs.push(dir.to_string());
                }
                entries.push(Entry::new(&lib.display().to_string(), &lib)?);
            }
            if !entries.iter().any(|e| &e.path == interp) {
                entries.push(Entry::new(interp, Path::new(interp))?);
            }
        }
        Ok(Rootfs { entries, lib_dirs })
    }

    /// A tag that changes whenever any file does (FNV-1a: stable across
    /// builds and runs).
    pub fn tag(&self) -> String {
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for e in &self.entries {
            for b in e.path.bytes().chain(e.identity.bytes()) {
                h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
            }
        }
        format!("{h:016x}")
    }

    pub fn image(&self) -> String {
        format!("{REPO}:{}", self.tag())
    }

    /// The root filesystem as an uncompressed ustar archive.
    pub fn tar(&self) -> anyhow::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut dirs: Vec<String> = vec!["tmp".into()];
        for e in &self.entries {
            let rel = e.path.trim_start_matches('/');
            let mut acc = String::new();
            for part in rel
                .split('/')
                .collect::<Vec<_>>()
                .iter()
                .rev()
                .skip(1)
                .rev()
            {
                if !acc.is_empty() {
                    acc.push('/');
                }
                acc.push_str(part);
                if !dirs.contains(&acc) {
                    dirs.push(acc.clone());
                }
            }
        }
        for d in &dirs {
            let mode = if d == "tmp" { 0o1777 } else { 0o755 };
            header(&mut out, &format!("{d}/"), mode, 0, b'5')?;
        }
        for e in &self.entries {
            let data = fs::read(&e.source)
                .with_context(|| format!("cannot read {}", e.source.display()))?;
            header(
                &mut out,
                e.path.trim_start_matches('/'),
                0o755,
                data.len(),
                b'0',
            )?;
            out.extend_from_slice(&data);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.resize(out.len() + 1024, 0);
        Ok(out)
    }
}

fn octal(field: &mut [u8], value: u64) {
    let s = format!("{value:0width$o}", width = field.len() - 1);
    field[..s.len()].copy_from_slice(s.as_bytes());
}

fn header(out: &mut Vec<u8>, path: &str, mode: u32, size: usize, kind: u8) -> anyhow::Result<()> {
    if path.len() > 100 {
        bail!("path too long for the image archive: {path}");
    }
    let mut h = [0u8; 512];
    h[..path.len()].copy_from_slice(path.as_bytes());
    octal(&mut h[100..108], mode as u64);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size as u64);
    octal(&mut h[136..148], 0);
    h[156] = kind;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|b| *b as u32).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    out.extend_from_slice(&h);
    Ok(())
}

/// The image for this binary: reused when present, imported otherwise;
/// images of older binaries that no container uses are removed.
pub async fn ensure(docker: &Docker, rootfs: &Rootfs) -> anyhow::Result<(String, bool)> {
    let image = rootfs.image();
    let present = docker.get(&format!("/images/{image}/json")).await?;
    let built = if present.status.is_success() {
        false
    } else {
        docker
            .import(
                rootfs.tar()?,
                REPO,
                &rootfs.tag(),
                &format!("{IMAGE_LABEL}=1"),
            )
            .await?;
        true
    };
    for old in docker.images(IMAGE_LABEL).await? {
        let tags: Vec<&str> = old
            .get("RepoTags")
            .and_then(|t| t.as_array())
            .map(|a| a.iter().filter_map(|t| t.as_str()).collect())
            .unwrap_or_default();
        if tags.contains(&image.as_str()) {
            continue;
        }
        if let Some(id) = old.get("Id").and_then(|v| v.as_str()) {
            // 409 while another lab's containers still use it: kept.
            let _ = docker.delete(&format!("/images/{id}")).await;
        }
    }
    Ok((image, built))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_binary_has_a_loader_and_libraries() {
        let data = fs::read("/proc/self/exe").unwrap();
        let interp = interpreter(&data).unwrap();
        let maps = fs::read_to_string("/proc/self/maps").unwrap();
        let exe = fs::read_link("/proc/self/exe").unwrap();
        let libs = mapped_libraries(&maps, &exe);
        match interp {
            Some(i) => {
                assert!(i.starts_with('/'), "{i}");
                assert!(
                    libs.iter()
                        .any(|l| l.display().to_string().contains("libc.so")),
                    "{libs:?}"
                );
            }
            None => assert!(libs.is_empty(), "a static binary maps no libraries"),
        }
        assert!(!libs.contains(&exe));
        assert!(
            interpreter(b"not an elf at all, not an elf at all, not an elf at all, not!!!")
                .is_err()
        );
    }

    #[test]
    fn the_archive_is_valid_ustar() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("lib");
        fs::write(&src, b"abc").unwrap();
        let r = Rootfs {
            entries: vec![Entry::new("/usr/lib/x/libz.so.1", &src).unwrap()],
            lib_dirs: vec![],
        };
        let tar = r.tar().unwrap();
        assert_eq!(tar.len() % 512, 0);
        let names: Vec<String> = tar
            .chunks(512)
            .filter(|h| &h[257..262] == b"ustar")
            .map(|h| {
                String::from_utf8_lossy(&h[..100])
                    .trim_end_matches('\0')
                    .to_string()
            })
            .collect();
        assert_eq!(
            names,
            [
                "tmp/",
                "usr/",
                "usr/lib/",
                "usr/lib/x/",
                "usr/lib/x/libz.so.1"
            ]
        );
        // The checksum covers the header with its own field read as spaces.
        let h = &tar[512 * 4..512 * 5];
        let stored = u32::from_str_radix(String::from_utf8_lossy(&h[148..154]).trim(), 8).unwrap();
        let sum: u32 = h
            .iter()
            .enumerate()
            .map(|(i, b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    *b as u32
                }
            })
            .sum();
        assert_eq!(stored, sum);
        assert_eq!(&tar[512 * 5..512 * 5 + 3], b"abc");
        let before = r.tag();
        assert_ne!(
            before,
            Rootfs {
                entries: vec![],
                lib_dirs: vec![]
            }
            .tag()
        );
        // Rewriting the file (new size) changes the tag.
        fs::write(&src, b"abcd").unwrap();
        let again = Rootfs {
            entries: vec![Entry::new("/usr/lib/x/libz.so.1", &src).unwrap()],
            lib_dirs: vec![],
        };
        assert_ne!(before, again.tag());
    }
}
