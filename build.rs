//! Rebuilds the binary when a file is added to `web/`: `include_dir!` embeds the files it
//! finds, but on stable Rust the compiler tracks only those files, not the directory.

fn main() {
    println!("cargo:rerun-if-changed=web");
}
