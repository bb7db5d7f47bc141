//! `sqlx::migrate!` embeds the migrations when this crate compiles; without this line a new
//! migration file would not make cargo rebuild it, and a stale binary would lack the new tables.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
