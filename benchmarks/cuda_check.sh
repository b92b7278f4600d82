#!/usr/bin/env bash
# CUDA checks of gac-coding in one command. First the CUDA tests (pytest -m cuda: tests/test_cuda.py,
# correctness against float64, mixed precision, the training CLI plain and under torchrun with stop
# + resume, NCCL + DDP), then the measurements of benchmarks/cuda_check.py: training-step speed and
# memory, the peer benchmark (benchmarks/peers.py: against SpikingJelly's ms_resnet18 and the naive
# form), eager vs torch.compile (benchmarks/compile.py: training step, inference, compile time).
#
# Usage, from anywhere (the command runs in the repository it belongs to):
#
#     OUT=/path/for/results bash benchmarks/cuda_check.sh [ARGS...]
#     OUT=/tmp/cc bash benchmarks/cuda_check.sh --dry-run      # CPU, tiny sizes: tests the script
#
# OUT defaults to ./cuda_check_out. --no-tests leaves the tests out; the other ARGS go to
# benchmarks/cuda_check.py: --dry-run (also the tests' dry run, GAC_CODING_CUDA_DRY_RUN=1), --only
# A,B, --skip A,B (measurement names or prefixes, e.g. --skip peers). What it does:
#
#   1. find a python whose torch sees CUDA: $CUDA_CHECK_PYTHON, .venv/bin/python, python3, python,
#      then a few usual places (with --dry-run: the first python that has torch at all);
#   2. if there is none: python3 -m venv $CUDA_CHECK_VENV (default /tmp/gac_cuda_check_venv) and
#      pip install -e ".[train]" into it, time-limited (setup.log); if that fails too, the checks
#      still run on the best python with torch and record that CUDA is missing;
#   3. if that python lacks what the tests and the training CLI need (pytest, hypothesis,
#      scikit-learn, safetensors, tqdm), try pip install --target into a temporary folder appended
#      to PYTHONPATH;
#   4. run pytest -m cuda on tests/ (at most CUDA_CHECK_TEST_BUDGET seconds, default 240; 420 for
#      the dry run, whose CPU runs the same training commands more slowly), then
#      benchmarks/cuda_check.py, both with gac_coding imported from src/ (nothing needs installing).
#
# The whole run is bounded by CUDA_CHECK_BUDGET seconds (default 540: finished before 10 minutes
# even when a step hangs): every probe and install has its own timeout, the tests theirs, the
# measurements get what is left (each subprocess is killed at its own timeout) and skip what no
# longer fits.
#
# Files written to $OUT (eight at most): cuda_check.log (everything printed), cuda_tests.xml (the
# tests' JUnit report), cuda_tests.txt (their output), cuda_check.json (measurement name -> {ok,
# seconds, details | error}; rewritten after every one), summary.txt, subprocess.log (output of the
# measurements' subprocesses), env.txt (nvidia-smi, versions), setup.log (only when pip ran).
# Exit status: 0 every test and measurement passed (or was skipped), 1 one failed (or no test ran),
# 2 no python with torch, 124 the measurements ran out of time.

set -u

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${OUT:-$PWD/cuda_check_out}
mkdir -p "$OUT" || exit 2
OUT=$(cd "$OUT" && pwd)
export OUT
BUDGET=${CUDA_CHECK_BUDGET:-540}
START=$(date +%s)
DRY=0
TESTS=1
ARGS=()
for arg in "$@"; do
    case "$arg" in
        --no-tests) TESTS=0 ;;
        *) ARGS+=("$arg") ;;
    esac
    [ "$arg" = "--dry-run" ] && DRY=1
done
TEST_BUDGET=${CUDA_CHECK_TEST_BUDGET:-$([ "$DRY" = 1 ] && echo 420 || echo 240)}

elapsed() { echo $(( $(date +%s) - START )); }
left() { echo $(( BUDGET - $(elapsed) )); }
say() { echo "[cuda_check.sh +$(elapsed)s] $*"; }

write_fallback_json() {  # reason (no quotes in it): a result file even when Python never ran
    printf '{\n "setup": {"ok": false, "seconds": %s, "error": "%s"}\n}\n' "$(elapsed)" "$1" \
        >"$OUT/cuda_check.json"
}

PROBE_CODE='
import torch
ok = torch.cuda.is_available()
name = torch.cuda.get_device_name(0) if ok else "-"
print("GACPROBE", int(ok), torch.__version__, torch.version.cuda, name.replace(" ", "_"))
'

# probe PY: prints what it found; sets PROBE_TORCH=1 if torch imports, PROBE_CUDA=1 if it sees a GPU
probe() {
    local py=$1 out
    PROBE_TORCH=0
    PROBE_CUDA=0
    if [ ! -x "$py" ] && ! command -v "$py" >/dev/null 2>&1; then
        return
    fi
    out=$(timeout -k 5 120 "$py" -c "$PROBE_CODE" 2>&1)
    local rc=$? line
    line=$(printf '%s\n' "$out" | grep '^GACPROBE' | tail -n 1)
    if [ "$rc" -eq 0 ] && [ -n "$line" ]; then
        PROBE_TORCH=1
        [ "$(echo "$line" | cut -d' ' -f2)" = "1" ] && PROBE_CUDA=1
        say "  $py: torch $(echo "$line" | cut -d' ' -f3), CUDA $(echo "$line" | cut -d' ' -f4), \
GPU $(echo "$line" | cut -d' ' -f5)"
    else
        say "  $py: no usable torch (exit $rc): $(printf '%s' "$out" | tail -n 1)"
    fi
}

candidates() {
    [ -n "${CUDA_CHECK_PYTHON:-}" ] && echo "$CUDA_CHECK_PYTHON"
    echo "$REPO/.venv/bin/python"
    command -v python3 2>/dev/null
    command -v python 2>/dev/null
    echo /opt/torch/.venv/bin/python3
    echo /opt/conda/bin/python
    echo /usr/local/bin/python3
    echo /usr/bin/python3
}

find_python() {  # sets PY (CUDA torch; with --dry-run any torch) and TORCH_PY (any torch)
    PY=""
    TORCH_PY=""
    local seen=" " py
    while read -r py; do
        [ -z "$py" ] && continue
        case "$seen" in *" $py "*) continue ;; esac
        seen="$seen$py "
        [ "$(left)" -lt 200 ] && { say "  stopping the search: $(left) s left"; break; }
        probe "$py"
        if [ "$PROBE_TORCH" = 1 ] && [ -z "$TORCH_PY" ]; then
            TORCH_PY=$py
        fi
        if [ "$PROBE_CUDA" = 1 ] || { [ "$DRY" = 1 ] && [ "$PROBE_TORCH" = 1 ]; }; then
            PY=$py
            return
        fi
    done < <(candidates)
}

install_venv() {  # pip install -e ".[train]" into a fresh venv; sets PY when its torch sees CUDA
    local venv=${CUDA_CHECK_VENV:-/tmp/gac_cuda_check_venv} base limit
    base=$(command -v python3 || command -v python)
    if [ -z "$base" ]; then
        say "no python3 to create a venv with"
        return
    fi
    limit=$(( $(left) - 150 ))
    [ "$limit" -gt 300 ] && limit=300
    if [ "$limit" -lt 60 ]; then
        say "no time left for pip ($(left) s)"
        return
    fi
    say "no python with a CUDA torch: creating $venv, pip install -e .[train] (limit ${limit} s, setup.log)"
    {
        echo "=== $(date): $base -m venv $venv"
        timeout -k 5 60 "$base" -m venv "$venv" &&
            echo "=== pip install -e $REPO[train]" &&
            timeout -k 10 "$limit" "$venv/bin/python" -m pip install --disable-pip-version-check \
                --retries 1 --timeout 20 -e "$REPO[train]"
        echo "=== exit status $?"
    } >>"$OUT/setup.log" 2>&1
    tail -n 3 "$OUT/setup.log" | sed 's/^/    /'
    probe "$venv/bin/python"
    if [ "$PROBE_TORCH" = 1 ] && [ -z "$TORCH_PY" ]; then
        TORCH_PY="$venv/bin/python"
    fi
    [ "$PROBE_CUDA" = 1 ] && PY="$venv/bin/python"
}

add_missing_extras() {  # what the training CLI imports; pip install --target a temp folder if missing
    local missing pkgs="" site limit m
    missing=$(timeout -k 5 60 "$PY" -c '
import importlib.util as u
print(" ".join(m for m in ("sklearn", "safetensors", "tqdm", "numpy", "pytest", "hypothesis")
               if u.find_spec(m) is None))' 2>/dev/null)
    [ -z "$missing" ] && return
    for m in $missing; do
        case "$m" in sklearn) pkgs="$pkgs scikit-learn" ;; *) pkgs="$pkgs $m" ;; esac
    done
    limit=$(( $(left) - 200 ))
    [ "$limit" -gt 120 ] && limit=120
    if [ "$limit" -lt 30 ]; then
        say "missing$pkgs; no time left to install them: the tests will fail"
        return
    fi
    site=$(mktemp -d /tmp/gac_cuda_check_site.XXXXXX)
    say "missing$pkgs: pip install --target $site (limit ${limit} s, setup.log)"
    # shellcheck disable=SC2086
    timeout -k 10 "$limit" "$PY" -m pip install --disable-pip-version-check --retries 1 --timeout 20 \
        --target "$site" $pkgs >>"$OUT/setup.log" 2>&1 || say "  pip failed: the tests will fail"
    export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$site"  # last: the python's own packages win
}

write_env() {
    {
        echo "date: $(date -u)"
        echo "uname: $(uname -a)"
        echo "python: $PY"
        timeout -k 5 60 "$PY" -c 'import sys, torch; print(sys.version); print("torch", torch.__version__,
"cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())'
        echo "--- nvidia-smi"
        timeout -k 5 30 nvidia-smi 2>&1 || echo "(nvidia-smi: not available)"
        echo "--- packages"
        timeout -k 5 60 "$PY" -m pip list --disable-pip-version-check 2>/dev/null |
            grep -iE '^(torch|torchvision|triton|numpy|scikit-learn|safetensors|tqdm|nvidia-(cudnn|nccl)[a-z0-9-]*) '
        echo "--- repository"
        timeout -k 5 20 git -C "$REPO" log -1 --oneline 2>&1
        timeout -k 5 20 git -C "$REPO" status --short 2>&1 | head -n 20
    } >"$OUT/env.txt" 2>&1
}

main() {
    say "repository $REPO, OUT=$OUT, budget ${BUDGET} s, dry-run $DRY, args: $*"
    say "looking for a python with $([ "$DRY" = 1 ] && echo "torch" || echo "a CUDA-enabled torch")"
    find_python
    if [ -z "$PY" ] && [ "$DRY" = 0 ]; then
        install_venv
    fi
    if [ -z "$PY" ]; then
        if [ -z "$TORCH_PY" ]; then
            say "FAILED: no python with torch found and none could be installed"
            write_fallback_json "no python with torch found and pip install -e .[train] failed (see setup.log)"
            return 2
        fi
        PY=$TORCH_PY
        say "no CUDA-enabled torch: running the checks on $PY anyway, to record what fails"
    fi
    say "using $PY"
    export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}"
    export PYTHONUNBUFFERED=1
    add_missing_extras
    write_env
    local budget rc test_rc=0
    if [ "$TESTS" = 1 ]; then
        run_tests
        test_rc=$?
    fi
    budget=$(( $(left) - 25 ))
    [ "$budget" -lt 60 ] && budget=60
    say "running benchmarks/cuda_check.py (budget ${budget} s)"
    timeout -k 10 $(( budget + 20 )) "$PY" "$REPO/benchmarks/cuda_check.py" --out "$OUT" \
        --budget "$budget" ${ARGS[@]+"${ARGS[@]}"}
    rc=$?
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        say "cuda_check.py was stopped at its time limit; cuda_check.json holds the measurements that finished"
        rc=124
    fi
    [ -f "$OUT/cuda_check.json" ] || write_fallback_json "cuda_check.py exited with status $rc and wrote nothing"
    if [ "$rc" -eq 0 ] && [ "$test_rc" -ne 0 ]; then
        rc=1
    fi
    say "done in $(elapsed) s, exit status $rc (tests: $test_rc); results in $OUT"
    return "$rc"
}

run_tests() {  # pytest -m cuda (the dry run maps the device to the CPU); its status
    local limit rc
    limit=$TEST_BUDGET
    [ "$limit" -gt $(( $(left) - 100 )) ] && limit=$(( $(left) - 100 ))
    [ "$limit" -lt 60 ] && limit=60
    say "running the CUDA tests: pytest -m cuda (limit ${limit} s, cuda_tests.txt, cuda_tests.xml)"
    (
        cd "$REPO" || exit 2
        [ "$DRY" = 1 ] && export GAC_CODING_CUDA_DRY_RUN=1
        timeout -k 10 "$limit" "$PY" -m pytest -m cuda tests -q -p no:cacheprovider \
            --junitxml "$OUT/cuda_tests.xml" >"$OUT/cuda_tests.txt" 2>&1
    )
    rc=$?
    tail -n 25 "$OUT/cuda_tests.txt" | sed 's/^/    /'
    case "$rc" in
        0) say "CUDA tests: passed" ;;
        5) say "CUDA tests: none ran (pytest deselects them where torch sees no CUDA)" ;;
        124|137) say "CUDA tests: stopped at ${limit} s" ;;
        *) say "CUDA tests: FAILED (pytest exit status $rc)" ;;
    esac
    return "$rc"
}

rm -f "$OUT/cuda_check.json" "$OUT/summary.txt" "$OUT/subprocess.log" "$OUT/env.txt" "$OUT/setup.log" \
    "$OUT/cuda_tests.xml" "$OUT/cuda_tests.txt"
: >"$OUT/cuda_check.log"
main "$@" 2>&1 | tee -a "$OUT/cuda_check.log"
exit "${PIPESTATUS[0]}"
