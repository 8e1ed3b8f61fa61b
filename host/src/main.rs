fn main() -> std::process::ExitCode {
    plume::cli::main()
}
