#!/usr/bin/env bash
# The one CI script: .ci/run (local/agent CI) and .github/workflows/ci.yml both call these
# steps, so the two cannot drift apart. Run from anywhere; it works in the repository root.
#
#   bash .ci/check.sh install              `make install`: .venv + requirements.lock + the project
#   bash .ci/check.sh lint                 `make lint` (ruff, ruff format --check, mypy) + workflow schema
#   bash .ci/check.sh test                 `make test` (the README's test command)
#   bash .ci/check.sh pipeline             `make repro` (committed params), then the gate
#   bash .ci/check.sh metrics-diff REV     markdown table of `dvc metrics diff REV`
#   bash .ci/check.sh all                  install, lint, test, pipeline
#
# Progress banners go to stderr, so `metrics-diff REV > file.md` captures only the markdown.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="$ROOT/.venv"
PYTHON="${PYTHON:-python3}"          # interpreter used to create .venv when it is missing
# The steps `all` runs, in order; the GitHub workflow calls the same steps in the same order
# (tests/repo/test_ci_files.py checks that).
ALL_STEPS=(install lint test pipeline)

# DVC stage commands (`python src/stages/...`) must find the venv's python, not the system one.
export PATH="$VENV/bin:$PATH"
export DVC_NO_ANALYTICS=1             # no usage analytics from DVC
export DVC_STUDIO_OFFLINE=1           # never push live metrics to DVC Studio
export PIP_DISABLE_PIP_VERSION_CHECK=1
export PIP_NO_INPUT=1
export GIT_TERMINAL_PROMPT=0

say() { printf '%s\n' "$*" >&2; }
die() { say "check.sh: error: $*"; exit 1; }

usage() {
    sed -n '5,10s/^#   //p' "${BASH_SOURCE[0]}" >&2
    exit 2
}

need_venv() {
    [[ -x "$VENV/bin/python" ]] || die ".venv is missing; run 'bash .ci/check.sh install' first"
}

step_install() {
    command -v "$PYTHON" >/dev/null 2>&1 \
        || die "'$PYTHON' not found; install Python >= 3.11 or set PYTHON=/path/to/python3.11"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "$("$PYTHON" --version 2>&1) is too old; this project needs Python >= 3.11 (set PYTHON=...)"
    # The Makefile's install target is what the README's commands use: one way to set up.
    make install PYTHON="$PYTHON"
    "$VENV/bin/python" -c 'import cifar10_mlops' \
        || die "cifar10_mlops does not import after install"
}

step_lint() {
    need_venv
    # `make lint` is what developers run: ruff check, ruff format --check, mypy.
    make lint

    local workflows=()
    shopt -s nullglob
    workflows=(.github/workflows/*.yml .github/workflows/*.yaml)
    shopt -u nullglob
    ((${#workflows[@]})) || die "no workflow files under .github/workflows/"
    "$VENV/bin/check-jsonschema" --builtin-schema vendor.github-workflows "${workflows[@]}"
}

step_test() {
    local log rc
    command -v make >/dev/null 2>&1 \
        || die "'make' not found; install it (Debian/Ubuntu: apt-get install -y make) or use .ci/run"
    log="$(mktemp)"
    # `make test` is the README's test command: it sets up .venv itself and runs the whole
    # pytest suite, slow tests included.
    set +e
    make test 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
    # pytest exits 5 when it collected no tests. make turns that into "*** [...] Error 5" and
    # exit 2; a recipe that swallowed the code still leaves pytest's "no tests ran" summary
    # as the last line.
    if grep -Eq '^make(\[[0-9]+\])?: \*\*\* .*Error 5$' "$log" \
        || sed '/^[[:space:]]*$/d' "$log" | tail -n 1 | grep -Eq '^=*[[:space:]]*no tests ran'; then
        rm -f "$log"
        die "pytest collected no tests (exit code 5); check testpaths in pyproject.toml, any -k/-m filter in the Makefile's test target, and that tests/test_*.py exist"
    fi
    rm -f "$log"
    ((rc == 0)) || die "'make test' failed (exit $rc)"
}

step_pipeline() {
    need_venv
    [[ -f dvc.yaml ]] || die "dvc.yaml not found in $ROOT"
    if git rev-parse -q --verify HEAD >/dev/null 2>&1 \
        && ! git diff --quiet HEAD -- params.yaml 2>/dev/null; then
        say "check.sh: warning: params.yaml differs from the committed version; running with it anyway"
    fi
    # `make repro` is the README's main command: the ResNet50 main job, reported (its figures
    # move with the CPU's kernels, so they are not what the gate checks).
    make repro
    gate_recipe_run
}

# The regression gate: the gate's recipe (presets/ci-gate.yaml, a run that converges, so its
# figures hold on any CPU and either backend) through `dvc exp run` in a fresh clone of this
# commit, its metrics against .ci/baseline.json. They are kept in reports/ci-gate/ (the
# metrics and the markdown table of the pull-request comment).
gate_recipe_run() {
    local work rc
    work="$(mktemp -d)"
    git clone -q "$ROOT" "$work/repo"
    git -C "$work/repo" config user.name "ci gate"                   # dvc exp run commits
    git -C "$work/repo" config user.email "ci-gate@example.invalid"
    # shellcheck disable=SC2046  # the preset prints one -S argument per key
    if ! (cd "$work/repo" && "$VENV/bin/dvc" exp run \
        $("$VENV/bin/cifar10-mlops" preset ci-gate)) >"$work/exp-run.log" 2>&1; then
        tail -n 40 "$work/exp-run.log" >&2
        rm -rf "$work"
        die "the gate's recipe (dvc exp run \$(cifar10-mlops preset ci-gate)) failed"
    fi
    mkdir -p reports/ci-gate
    cp "$work/repo/reports/metrics.json" reports/ci-gate/metrics.json
    rm -rf "$work"
    set +e
    "$VENV/bin/cifar10-mlops" gate --metrics reports/ci-gate/metrics.json \
        --baseline .ci/baseline.json --markdown reports/ci-gate/gate.md
    rc=$?
    set -e
    ((rc == 0)) || die "regression gate failed (reports/ci-gate/metrics.json against .ci/baseline.json)"
}

step_metrics_diff() {
    local base="${1:-}" diff
    [[ -n "$base" ]] || die "usage: bash .ci/check.sh metrics-diff BASE_REV (e.g. origin/main)"
    need_venv
    git rev-parse -q --verify "$base^{commit}" >/dev/null \
        || die "'$base' is not a known git revision; fetch it first (actions/checkout needs fetch-depth: 0)"
    diff="$("$VENV/bin/dvc" metrics diff "$base" --md)"
    # The gated figures first: they do not depend on the runner, so the baseline committed
    # from any machine compares like with like.
    if [[ -f reports/ci-gate/gate.md ]]; then
        printf '### Regression gate: presets/ci-gate.yaml on this runner vs .ci/baseline.json\n\n'
        cat reports/ci-gate/gate.md
        printf '\n'
    fi
    printf '### Main job (ResNet50; moves with the CPU'"'"'s kernels, not gated): `%s` vs this change\n\n' "$base"
    # A table with only its header and separator rows means no metric changed.
    if (($(grep -c '^|' <<<"$diff" || true) > 2)); then
        printf '%s\n' "$diff"
    else
        printf 'No metric changed.\n'
    fi
}

run_step() {
    local name="$1" start=$SECONDS fn
    shift
    fn="step_${name//-/_}"
    say "==> [check] $name"
    "$fn" "$@"
    say "<== [check] $name OK ($((SECONDS - start))s)"
}

main() {
    (($#)) || usage
    local cmd="$1"
    shift
    case "$cmd" in
        install | lint | test | pipeline)
            (($# == 0)) || die "'$cmd' takes no arguments"
            run_step "$cmd"
            ;;
        metrics-diff)
            (($# == 1)) || die "usage: bash .ci/check.sh metrics-diff BASE_REV (e.g. origin/main)"
            run_step metrics-diff "$1"
            ;;
        all)
            (($# == 0)) || die "'all' takes no arguments"
            local start=$SECONDS step
            for step in "${ALL_STEPS[@]}"; do
                run_step "$step"
            done
            say "==> [check] all steps passed ($((SECONDS - start))s)"
            ;;
        -h | --help | help) usage ;;
        *)
            say "check.sh: unknown step '$cmd'"
            usage
            ;;
    esac
}

main "$@"
