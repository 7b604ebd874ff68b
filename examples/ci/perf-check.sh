#!/usr/bin/env bash
# Performance check of a pull request, for CI (examples/ci/README.md; the workflow: perf.yml).
#
#  1. `harness ab --isolate` of the PR's scenario file against main's (two checkouts; each side in its
#     own worker process, so the two `import model`s cannot collide);
#  2. optionally one `harness run` of the PR's scenario into a history (RECORD=1), then
#     `harness history check` on that history.
# Both answers go to $GITHUB_STEP_SUMMARY as markdown (appended; default ./perf-summary.md).
#
# Environment (all optional except HEAD_DIR):
#   PYTHON       a Python with harness installed                  (default: python3)
#   HEAD_DIR     the PR's checkout (the candidate)
#   BASE_DIR     main's checkout (the baseline); empty: no A/B (a push to main)
#   SCENARIO     the scenario file, relative to a checkout          (default: bench/perf_scenario.py)
#   HISTORY_DIR  a stored history (a --logdir holding history.csv); empty: no history check
#   RECORD       1: run HEAD's scenario once into HISTORY_DIR first (default: 1)
#   COMMON_ARGS  flags for ab's sides and for that run (one config)   (default: --threads 1)
#   RUN_ARGS     more flags for that run (--iters, --tag ...)          (default: none)
#   AB_ARGS      more flags for ab                                    (default: --budget-s 40)
#   CHECK_ARGS   more flags for history check                         (default: none)
#   THRESHOLD    the smallest change that is a regression             (default: 5%)
#   WORK_DIR     where ab's files go                                  (default: a new temporary directory)
#
# Exit: 0 no regression; 1 a regression (ab or history check); 2 a step could not answer (bad input,
# a scenario that does not import, no history). The largest code of the steps wins.
set -uo pipefail

PYTHON=${PYTHON:-python3}
SCENARIO=${SCENARIO:-bench/perf_scenario.py}
RECORD=${RECORD:-1}
COMMON_ARGS=${COMMON_ARGS:---threads 1}
RUN_ARGS=${RUN_ARGS:-}
AB_ARGS=${AB_ARGS:---budget-s 40}
CHECK_ARGS=${CHECK_ARGS:-}
THRESHOLD=${THRESHOLD:-5%}
SUMMARY=${GITHUB_STEP_SUMMARY:-perf-summary.md}
HERE=$(cd "$(dirname "$0")" && pwd)
WORK_DIR=${WORK_DIR:-$(mktemp -d)}
mkdir -p "$WORK_DIR"
status=0

worst() { [ "$1" -gt "$status" ] && status=$1; return 0; }

if [ -z "${HEAD_DIR:-}" ] || [ ! -f "$HEAD_DIR/$SCENARIO" ]; then
    echo "perf-check: HEAD_DIR must be a checkout holding $SCENARIO (HEAD_DIR=${HEAD_DIR:-unset})" >&2
    printf '### Performance check: no result\n\nno scenario file `%s` in the PR checkout\n' "$SCENARIO" >>"$SUMMARY"
    exit 2
fi

if [ -n "${BASE_DIR:-}" ]; then
    # shellcheck disable=SC2086  # the *_ARGS are lists of flags
    "$PYTHON" -m harness ab "$BASE_DIR/$SCENARIO" "$HEAD_DIR/$SCENARIO" --isolate --threshold "$THRESHOLD" \
        $COMMON_ARGS $AB_ARGS --logdir "$WORK_DIR/ab-logs" --json >"$WORK_DIR/ab.json"
    rc=$?
    echo "perf-check: harness ab exit $rc"
    "$PYTHON" "$HERE/ab_markdown.py" "$WORK_DIR/ab.json" --exit-code "$rc" >>"$SUMMARY"
    printf '\n' >>"$SUMMARY"
    worst "$rc"
fi

if [ -n "${HISTORY_DIR:-}" ]; then
    if [ "$RECORD" = 1 ]; then
        # shellcheck disable=SC2086
        "$PYTHON" -m harness run "$HEAD_DIR/$SCENARIO" $COMMON_ARGS $RUN_ARGS --logdir "$HISTORY_DIR" \
            >"$WORK_DIR/run.log" 2>&1
        rc=$?
        echo "perf-check: harness run exit $rc"
        if [ "$rc" -ne 0 ]; then
            printf '### Performance history: the run failed (exit %s)\n\n```\n%s\n```\n' "$rc" \
                "$(tail -n 5 "$WORK_DIR/run.log")" >>"$SUMMARY"
            worst 2
        fi
    fi
    # shellcheck disable=SC2086
    "$PYTHON" -m harness history check --logdir "$HISTORY_DIR" --threshold "$THRESHOLD" --format markdown \
        $CHECK_ARGS >"$WORK_DIR/check.md" 2>"$WORK_DIR/check.err"
    rc=$?
    echo "perf-check: harness history check exit $rc"
    if [ "$rc" -eq 2 ]; then
        printf '### Performance history check: no result\n\n%s\n' "$(cat "$WORK_DIR/check.err")" >>"$SUMMARY"
    else
        cat "$WORK_DIR/check.md" >>"$SUMMARY"
    fi
    worst "$rc"
fi

echo "perf-check: exit $status (summary: $SUMMARY)"
exit "$status"
