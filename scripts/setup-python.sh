#!/usr/bin/env bash
# Python peers for tests and benchmarks: anndata (current) in .venv. Idempotent.
# The fixtures' second writer, anndata 0.7.8, goes in .venv-anndata07 only with --fixtures.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! .venv/bin/python -c "import anndata" 2>/dev/null; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check anndata h5py
fi
if [ "${1:-}" = "--fixtures" ]; then
  .venv/bin/pip install --quiet --disable-pip-version-check hdf5plugin
  if ! .venv-anndata07/bin/python -c "import anndata" 2>/dev/null; then
    python3 -m venv .venv-anndata07
    .venv-anndata07/bin/pip install --quiet --disable-pip-version-check \
      anndata==0.7.8 numpy==1.23.5 pandas==1.5.3 h5py==3.8.0 scipy==1.10.1
  fi
fi
echo "python peers ready: $(.venv/bin/python -c 'import anndata; print("anndata", anndata.__version__)')"
