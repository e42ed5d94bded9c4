//! Project tooling: `cargo xtask <command>` (the alias lives in .cargo/config.toml).
//!
//! The README's two commands are `cargo xtask run` and `cargo xtask test`; both start with
//! `setup`, so a fresh Debian or Ubuntu machine with rustup needs nothing else.

mod bench;
mod cmd;
mod fuzz;
mod run;
mod scripts;
mod setup;
mod test;
mod vm;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Build, test and run injector")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what this machine lacks to build and test (idempotent, quick when all is there).
    Setup,
    /// Set up, build in release mode and start the daemon (on the demo lab when it exists).
    Run {
        /// Extra arguments for `injector serve`, after `--`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Set up, then run every check and test (fmt, clippy, scripts, tests, stock-kernel VM).
    Test(test::TestOptions),
    /// Boot Debian's stock kernel in qemu and run the kernel_* tests of `injector` there.
    VmTest(vm::VmOptions),
    /// Check the shell scripts and the Vagrantfile (syntax and shellcheck).
    CheckScripts,
    /// Run the cargo-fuzz targets of fuzz/ for a while each (installs cargo-fuzz).
    Fuzz(fuzz::FuzzOptions),
    /// Measure injector against bare veth and a userland proxy (root; writes target/bench/).
    Bench(bench::BenchOptions),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Setup => setup::setup(),
        Command::Run { args } => run::run(&args),
        Command::Test(opts) => test::test(&opts),
        Command::VmTest(opts) => setup::setup().and_then(|()| vm::vm_test(&opts)),
        Command::CheckScripts => scripts::check(),
        Command::Fuzz(opts) => setup::setup().and_then(|()| fuzz::fuzz(&opts)),
        Command::Bench(opts) => bench::bench(&opts),
    };
    if let Err(e) = result {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    /// clap checks a command's definition only when it is used; check all of it here.
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory as _;
        super::Cli::command().debug_assert();
    }
}
