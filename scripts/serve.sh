#!/usr/bin/env bash
# The main entry point: builds the page (scripts/build-web.sh) and serves www/ on this computer.
# Open the printed address, drag in a .h5ad / .csv / .csv.gz, or press "Try the sample".
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-web.sh
port="${PORT:-8000}"
echo "mambaPerturb is at http://127.0.0.1:$port/  (Ctrl-C stops it; files you drop never leave the page)"
exec python3 -m http.server "$port" --bind 127.0.0.1 --directory www
