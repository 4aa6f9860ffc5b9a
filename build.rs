//! Rebuilds when a migration is added or changed: `sqlx::migrate!` embeds the files of
//! `migrations/`, but cargo only watches what it compiles.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
