//! Compiles `proto/isobox.proto` without a system `protoc` (protox parses it in Rust), generates
//! the tonic client and server, and writes the encoded file descriptor set for server
//! reflection (`OUT_DIR/isobox_descriptor.bin`).

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=../../proto");
    let fds = protox::compile(["../../proto/isobox.proto"], ["../../proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("isobox_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
