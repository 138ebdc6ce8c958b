//! Generates `include/vmm_rs.h` from the crate with cbindgen.
//!
//! The header is committed; `make check` fails when a fresh generation
//! differs from the committed file.

use std::env;
use std::path::PathBuf;

fn main() {
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    // Under loom the crate is built for model checking only; no header.
    if env::var("CARGO_CFG_LOOM").is_ok() {
        return;
    }
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("cbindgen.toml is readable");
    match cbindgen::Builder::new()
        // Only the C face: core constants and types stay out of the header.
        .with_src(crate_dir.join("src/ffi/mod.rs"))
        .with_config(config)
        .generate()
    {
        Ok(bindings) => {
            bindings.write_to_file(crate_dir.join("include/vmm_rs.h"));
        }
        Err(e) => panic!("cbindgen failed: {e}"),
    }
}
