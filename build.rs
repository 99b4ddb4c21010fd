// `sqlx::migrate!` embeds the files under migrations/ at compile time; without
// this, cargo does not rebuild when a migration is added and the binary
// silently lacks it.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
