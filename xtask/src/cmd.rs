//! Running other programs: every command is echoed before it runs, and a failure names it.

use anyhow::{Context as _, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The workspace root (xtask lives one level below it).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent directory")
        .to_path_buf()
}

/// Cargo's target directory, honouring CARGO_TARGET_DIR.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// `cargo` through rustup's proxy, so `+nightly` works, run from the workspace root.
/// `cargo run` exports the running toolchain in RUSTUP_TOOLCHAIN; drop it so a `+toolchain`
/// argument or the default toolchain decides.
pub fn cargo() -> Command {
    let mut c = Command::new("cargo");
    c.current_dir(root()).env_remove("RUSTUP_TOOLCHAIN");
    c
}

pub fn display(c: &Command) -> String {
    let mut words: Vec<String> = c
        .get_envs()
        .filter_map(|(k, v)| {
            Some(format!(
                "{}={}",
                k.to_string_lossy(),
                quote(&v?.to_string_lossy())
            ))
        })
        .collect();
    words.push(c.get_program().to_string_lossy().into_owned());
    words.extend(c.get_args().map(|a| quote(&a.to_string_lossy())));
    words.join(" ")
}

/// Quotes a word for a shell when it needs it, so a printed command can be pasted back.
fn quote(w: &str) -> String {
    let plain = !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:+,@%".contains(c));
    if plain {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', r"'\''"))
    }
}

/// Runs a command with inherited stdio; fails unless it exits 0.
pub fn run(c: &mut Command) -> Result<()> {
    eprintln!("$ {}", display(c));
    let status = c
        .status()
        .with_context(|| format!("cannot start {}", display(c)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", display(c));
    }
    Ok(())
}

/// Runs a command quietly and returns its stdout; fails (with its stderr) unless it exits 0.
pub fn output(c: &mut Command) -> Result<String> {
    let out = c
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start {}", display(c)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            display(c),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Where a program is on PATH, if anywhere.
pub fn which(program: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Whether `program <help_args>` lists `item` (a subcommand or a flag) as usable. injector's
/// CLI lists commands still being written with "(not yet available)"; those do not count.
pub fn help_lists(program: &Path, help_args: &[&str], item: &str) -> Result<bool> {
    let help = output(Command::new(program).args(help_args))?;
    Ok(lists(&help, item))
}

fn lists(help: &str, item: &str) -> bool {
    help.lines().any(|l| {
        let l = l.trim_start();
        l.strip_prefix(item)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', ',', '\t', '=', '<']))
            && !l.contains("not yet available")
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn help_listing_counts_only_available_items() {
        let help = "Commands:\n  serve    Run the daemon\n  doctor   Report features (not yet available)\n\
                    Options:\n      --lab    Start the demo lab\n      --labels <L>\n";
        assert!(super::lists(help, "serve"));
        assert!(!super::lists(help, "doctor"));
        assert!(super::lists(help, "--lab"));
        assert!(!super::lists(help, "--la"));
        assert!(!super::lists(help, "lab"));
    }
}
