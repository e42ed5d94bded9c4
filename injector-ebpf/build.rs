use which::which;

/// Rebuild the eBPF object when bpf-linker changes: a new linker can change
/// the BTF it emits, and cargo would not notice otherwise.
fn main() {
    let linker = which("bpf-linker").expect("bpf-linker not found: run `cargo xtask setup`");
    println!(
        "cargo:rerun-if-changed={}",
        linker.to_str().expect("utf-8 path")
    );
}
