#!/usr/bin/env python3
"""Static checks of the repository's Dockerfile build context (no Docker needed).

Nothing here builds the image (no registry access for base images on these machines);
it checks that `docker build .` would see what `cargo build --release --locked -p weft`
needs: Cargo.toml, Cargo.lock and every workspace member's manifest and sources must not
be excluded by .dockerignore, and the Dockerfile must keep the contract the chart relies
on (binary path, entrypoint, non-root user). hadolint lints the Dockerfile separately.

.dockerignore is read with gitignore semantics (pathspec), which exclude at least as
much as Docker's own matcher for the patterns used, so a pass here is conservative.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pathspec

ROOT = Path(__file__).resolve().parents[2]


def main() -> int:
    problems: list[str] = []
    dockerfile = (ROOT / "Dockerfile").read_text()
    ignore = pathspec.PathSpec.from_lines(
        "gitwildmatch", (ROOT / ".dockerignore").read_text().splitlines()
    )
    manifest = tomllib.loads((ROOT / "Cargo.toml").read_text())
    members = manifest.get("workspace", {}).get("members", [])
    needed = ["Cargo.toml", "Cargo.lock"]
    for m in members:
        base = "" if m == "." else m.rstrip("/") + "/"
        needed.append(base + "Cargo.toml")
        src = ROOT / base / "src"
        needed += [str(p.relative_to(ROOT)) for p in src.rglob("*") if p.is_file()]
    for path in needed:
        if not (ROOT / path).exists():
            problems.append(f"{path} does not exist")
        elif ignore.match_file(path):
            problems.append(f".dockerignore excludes {path}, which the build needs")
    for pattern, what in (
        (r"(?m)^FROM rust:1-bookworm|RUST_IMAGE=rust:1-bookworm", "rust:1-bookworm builder"),
        (r"cargo build --release --locked -p weft", "cargo build --release --locked -p weft"),
        (r"(?m)^COPY --from=builder \S+ /usr/local/bin/weft$", "binary at /usr/local/bin/weft"),
        (r'(?m)^ENTRYPOINT \["weft"\]$', 'ENTRYPOINT ["weft"]'),
        (r'(?m)^CMD \["serve"\]$', 'CMD ["serve"]'),
        (r"(?m)^USER 65532:65532$", "non-root USER 65532 (the chart's runAsUser)"),
        (r"distroless/cc-debian12:nonroot", "distroless cc-debian12:nonroot runtime"),
    ):
        if not re.search(pattern, dockerfile):
            problems.append(f"Dockerfile lacks {what}")
    for p in problems:
        print(f"FAIL {p}")
    print(f"docker context: {len(needed)} files needed by the build are in it" if not problems else "")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
