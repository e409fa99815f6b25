//! Link options of the `dpf` binary.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // The binary's 100,000-odd relative relocations packed into a few kilobytes (DT_RELR, read by
    // glibc 2.36 and later: Debian 12, the image's base): the loader reads and applies them at every
    // start, and the packed form starts the process faster than the 2.7 MB table it replaces.
    let linux_gnu = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    if linux_gnu {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
