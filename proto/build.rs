//! Compiles the .proto files with protox, a pure-Rust compiler, so building
//! novamedic needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "novamedic/v1/novamedic.proto";
    println!("cargo:rerun-if-changed={proto}");

    let descriptors = protox::compile([proto], ["."])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
