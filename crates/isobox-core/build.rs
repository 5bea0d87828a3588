//! The built-in language table as JSON (written to OUT_DIR): the binary parses it about ten
//! times faster than the TOML it comes from, and a one-run CLI pays that parse every time.

use std::path::Path;

fn main() {
    let src = "languages.toml";
    println!("cargo:rerun-if-changed={src}");
    let text = std::fs::read_to_string(src).expect("read languages.toml");
    let table: toml::Value = toml::from_str(&text).expect("languages.toml is valid TOML");
    let json = serde_json::to_string(&table).expect("a TOML value is JSON");
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    std::fs::write(Path::new(&out).join("languages.json"), json).expect("write languages.json");
}
