#!/usr/bin/env bash
# Runs the bounded model check of the session policy deeper than CI does:
# in release, for the given time budget, and prints the depth reached, the
# distinct states explored and the time.
#
#   scripts/model.sh [seconds] [max-depth]
#
# seconds defaults to 600, max-depth to 30. A violation prints the input
# sequence that leads to it and makes the script fail.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-600}"
depth="${2:-30}"
CLAWNODE_MODEL_SECS="$secs" CLAWNODE_MODEL_DEPTH="$depth" \
    cargo test --release -p clawnode-core --test model -- --nocapture 2>&1 \
    | grep -E '^(MEASURE model|model check|test result)|violated|^  [A-Z]'
