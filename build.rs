//! Generates `include/vmm_rs.h` from the crate with cbindgen (feature
//! `header`, on by default), and sets the shared library's soname.
//!
//! The header is committed; `make check` fails when a fresh generation
//! differs from the committed file.

use std::env;
use std::path::PathBuf;

fn main() {
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    // The shared library's soname carries the ABI version: the major
    // number, or for 0.x the minor too (every 0.x may break the ABI), so
    // a binary built against one never loads an incompatible other.
    // `make install` adds the matching links.
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if matches!(os.as_str(), "linux" | "freebsd" | "netbsd" | "openbsd" | "dragonfly" | "illumos" | "solaris") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libvmm_rs.so.{}", abi_version());
    }
    generate_header(&crate_dir);
}

/// Writes `include/vmm_rs.h` (feature `header`, on by default).
#[cfg(feature = "header")]
fn generate_header(crate_dir: &std::path::Path) {
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

#[cfg(not(feature = "header"))]
fn generate_header(_crate_dir: &std::path::Path) {}

/// "0.MINOR" for 0.x versions, "MAJOR" from 1.0 on.
fn abi_version() -> String {
    let major = env::var("CARGO_PKG_VERSION_MAJOR").unwrap();
    if major == "0" {
        format!("0.{}", env::var("CARGO_PKG_VERSION_MINOR").unwrap())
    } else {
        major
    }
}
