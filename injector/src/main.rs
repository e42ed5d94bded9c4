fn main() -> std::process::ExitCode {
    injector::cli::main()
}
