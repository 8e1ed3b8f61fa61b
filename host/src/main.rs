// mimalloc: the host allocates per span (strings, attribute vectors); glibc's
// malloc took a fifth of the time in `perf` (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    plume::cli::main()
}
