//! `isobox-runner`: PID 1 of every docker-backend container. It lives in the runtime image
//! (`isobox image build` copies it there) and is never run on the host.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    std::process::exit(isobox_sandbox::docker::runner::main(&args));
}
