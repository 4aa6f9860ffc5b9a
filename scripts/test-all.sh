#!/usr/bin/env bash
# Runs every test weft has: unit, provider contract, integration (SQLite and PostgreSQL),
# crash test, Helm chart and alert-rule checks. Installs what it needs itself.
# PostgreSQL is expected at 127.0.0.1:5432 (trust auth, user postgres); override with
# WEFT_TEST_PG_URL=postgres://user@host:port/db.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

if ! command -v cargo >/dev/null; then
    echo "cargo is required (https://rustup.rs)" >&2
    exit 1
fi

step "rustfmt and clippy"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "unit, provider and integration tests (SQLite and PostgreSQL)"
if command -v cargo-nextest >/dev/null; then
    cargo nextest run --workspace --all-features --no-fail-fast
    cargo test --workspace --all-features --doc
else
    cargo test --workspace --all-features --no-fail-fast
fi

step "Helm chart, dashboard and alert rules"
bash helm/check.sh

echo
echo "all tests passed"
