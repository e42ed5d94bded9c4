//! A writer for the "newc" cpio format the kernel unpacks as an initramfs. Written here rather
//! than staged on disk for `cpio -o`, so device nodes and modes need no root and nothing is
//! copied twice.

use anyhow::{Context as _, Result};
use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

pub struct Cpio<W: Write> {
    out: W,
    written: u64,
    ino: u32,
    dirs: BTreeSet<String>,
}

impl<W: Write> Cpio<W> {
    pub fn new(out: W) -> Self {
        Self {
            out,
            written: 0,
            ino: 0,
            dirs: BTreeSet::new(),
        }
    }

    /// A directory and its missing parents (the kernel creates no parents itself).
    pub fn dir(&mut self, path: &str) -> Result<()> {
        let path = path.trim_matches('/');
        if path.is_empty() || self.dirs.contains(path) {
            return Ok(());
        }
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent)?;
        }
        self.dirs.insert(path.to_string());
        self.entry(path, S_IFDIR | 0o755, 0, 0, &mut io::empty())
    }

    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> Result<()> {
        self.parent(path)?;
        self.entry(path, S_IFREG | mode, data.len() as u64, 0, &mut &data[..])
    }

    /// A regular file copied from the host, streamed rather than read into memory.
    pub fn copy(&mut self, path: &str, mode: u32, src: &Path) -> Result<()> {
        self.parent(path)?;
        let mut f = File::open(src).with_context(|| format!("opening {}", src.display()))?;
        let len = f.metadata()?.len();
        self.entry(path, S_IFREG | mode, len, 0, &mut f)
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> Result<()> {
        self.parent(path)?;
        self.entry(
            path,
            S_IFLNK | 0o777,
            target.len() as u64,
            0,
            &mut target.as_bytes(),
        )
    }

    pub fn char_dev(&mut self, path: &str, mode: u32, major: u32, minor: u32) -> Result<()> {
        self.parent(path)?;
        self.entry(
            path,
            S_IFCHR | mode,
            0,
            (major << 8) | minor,
            &mut io::empty(),
        )
    }

    /// Writes the trailer and returns the inner writer.
    pub fn finish(mut self) -> Result<W> {
        self.ino = 0;
        self.entry("TRAILER!!!", 0, 0, 0, &mut io::empty())?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn parent(&mut self, path: &str) -> Result<()> {
        match path.trim_matches('/').rsplit_once('/') {
            Some((parent, _)) => self.dir(parent),
            None => Ok(()),
        }
    }

    fn entry(
        &mut self,
        path: &str,
        mode: u32,
        len: u64,
        rdev: u32,
        data: &mut impl io::Read,
    ) -> Result<()> {
        let name = path.trim_start_matches('/');
        self.ino += 1;
        let len32 = u32::try_from(len).context("newc cannot hold files over 4 GiB")?;
        let fields = [
            self.ino,
            mode,
            0, // uid
            0, // gid
            if mode & 0o170_000 == S_IFDIR { 2 } else { 1 },
            0, // mtime: fixed, so the same inputs give the same archive
            len32,
            0, // dev major
            0, // dev minor
            rdev >> 8,
            rdev & 0xff,
            name.len() as u32 + 1,
            0, // checksum, unused by newc
        ];
        let mut header = String::from("070701");
        for f in fields {
            header.push_str(&format!("{f:08x}"));
        }
        self.put(header.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad()?;
        let copied = io::copy(&mut io::Read::take(&mut *data, len), &mut self.out)?;
        anyhow::ensure!(copied == len, "{path}: expected {len} bytes, read {copied}");
        self.written += copied;
        self.pad()
    }

    fn put(&mut self, b: &[u8]) -> Result<()> {
        self.out.write_all(b)?;
        self.written += b.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> Result<()> {
        let n = (4 - (self.written % 4) as usize) % 4;
        self.put(&[0; 3][..n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// The archive must be readable by a real cpio (the kernel's unpacker reads the same format).
    #[test]
    fn gnu_cpio_lists_and_extracts_what_was_written() {
        let dir = std::env::temp_dir().join(format!("xtask-cpio-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("src.bin");
        std::fs::write(&src, b"0123456789").unwrap();
        let mut c = Cpio::new(Vec::new());
        c.file("/init", 0o755, b"#!/bin/sh\n").unwrap();
        c.copy("/bin/tool", 0o755, &src).unwrap();
        c.symlink("/sbin/modprobe", "../bin/tool").unwrap();
        c.char_dev("/dev/console", 0o600, 5, 1).unwrap();
        c.dir("/lib/modules/x").unwrap();
        let archive = c.finish().unwrap();
        assert_eq!(archive.len() % 4, 0);

        let listing = Command::new("cpio")
            .args(["-itv", "--quiet"])
            .stdin(std::fs::File::open(write(&dir, &archive)).unwrap())
            .output()
            .expect("cpio must be installed (cargo xtask setup)");
        let listing = String::from_utf8_lossy(&listing.stdout);
        for want in [
            "init",
            "bin/tool",
            "sbin/modprobe -> ../bin/tool",
            "dev/console",
            "lib/modules/x",
        ] {
            assert!(listing.contains(want), "{want} missing from:\n{listing}");
        }
        assert!(
            listing
                .lines()
                .any(|l| l.starts_with('c') && l.contains("5,") && l.contains("dev/console"))
        );

        let out = dir.join("out");
        std::fs::create_dir_all(&out).unwrap();
        // The exit status is not checked: extracting the device node needs mknod rights, and
        // the regular files must come out regardless.
        Command::new("cpio")
            .args(["-id", "--quiet", "--no-absolute-filenames"])
            .current_dir(&out)
            .stdin(std::fs::File::open(dir.join("a.cpio")).unwrap())
            .status()
            .unwrap();
        assert_eq!(std::fs::read(out.join("bin/tool")).unwrap(), b"0123456789");
        assert_eq!(std::fs::read(out.join("init")).unwrap(), b"#!/bin/sh\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn write(dir: &Path, archive: &[u8]) -> std::path::PathBuf {
        let p = dir.join("a.cpio");
        std::fs::write(&p, archive).unwrap();
        p
    }
}
