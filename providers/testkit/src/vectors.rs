//! The shared signature test vectors (`shared/vectors/` beside the repository).
//!
//! Looked up in `WEFT_VECTORS_DIR`, then in `../shared/vectors` next to the workspace, then in
//! the copy bundled with this crate (`providers/testkit/vectors/`).

use std::path::PathBuf;

fn candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(dir) = std::env::var("WEFT_VECTORS_DIR") {
        out.push(PathBuf::from(dir));
    }
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // providers/testkit -> workspace root -> its parent holds shared/
    if let Some(root) = here.parent().and_then(|p| p.parent()) {
        if let Some(parent) = root.parent() {
            out.push(parent.join("shared").join("vectors"));
        }
    }
    out.push(here.join("vectors"));
    out
}

/// Loads one vector file (e.g. `"twilio_request_signature.json"`).
pub fn load(file: &str) -> serde_json::Value {
    for dir in candidates() {
        let path = dir.join(file);
        if let Ok(text) = std::fs::read_to_string(&path) {
            return serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        }
    }
    panic!("vector file {file} not found in {:?}", candidates());
}

/// The `cases` array of a vector file.
pub fn cases(file: &str) -> Vec<serde_json::Value> {
    load(file)["cases"].as_array().cloned().unwrap_or_default()
}

/// Runs `accepts` on every case and asserts it returns the case's `valid`, naming each failure.
/// Also asserts the file holds both accepted and rejected cases.
pub fn check_all(file: &str, accepts: impl Fn(&serde_json::Value) -> bool) {
    let cases = cases(file);
    assert!(!cases.is_empty(), "{file} has no cases");
    let mut failures = Vec::new();
    let (mut valid, mut invalid) = (0, 0);
    for case in &cases {
        let want = case["valid"].as_bool().unwrap();
        if want {
            valid += 1
        } else {
            invalid += 1
        }
        if accepts(case) != want {
            failures.push(format!("{} (valid = {want})", case["name"]));
        }
    }
    assert!(
        valid > 0 && invalid > 0,
        "{file}: expected both valid and invalid cases"
    );
    assert!(
        failures.is_empty(),
        "{file}: wrong verdict for {failures:?}"
    );
}
