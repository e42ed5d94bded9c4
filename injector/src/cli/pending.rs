//! Verbs whose implementation belongs to other parts of the project
//! (watch): they parse any arguments and fail
//! with a clear message until they land.

use clap::Args;

#[derive(Args, Debug)]
pub struct Rest {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    args: Vec<String>,
}

pub fn not_yet(verb: &str) -> anyhow::Result<()> {
    anyhow::bail!("injector {verb}: not yet available in this build")
}
