#!/usr/bin/env bash
# Every GPU check in one run, for a lent GPU machine without internet (bench/README.md):
# the tests marked `gpu`, then `bench/scale.py --gpu` and `bench/certify.py --only speed` on
# the GPU, which write their tables into bench/RESULTS.md. The three fit the device tool's
# 600 s per command. With $OUT set (the device tool's output folder) the updated RESULTS.md and
# the logs are copied there.
#
# usage: bash bench/gpu_session.sh [WHEELS]
#   WHEELS: a folder of wheels for what the machine lacks (installed with --no-deps into a
#   private folder; the machine's own torch is used).
set -u -o pipefail
cd "$(dirname "$0")/.."
site=${TMPDIR:-/tmp}/robustness-site
mkdir -p "$site"
if [ -n "${1:-}" ]; then
  pip install -q --no-index --no-deps --target "$site" "$1"/*.whl || exit 2
fi
# The checkout runs from PYTHONPATH, not installed: give it the package's entry points (the zoo:
# model scheme is a `robustness.plugins` entry point, the pytest plugin a `pytest11` one) as a
# dist-info folder that importlib.metadata finds on the path.
python - "$site" <<'PY' || exit 2
import pathlib, sys, tomllib

project = tomllib.loads(pathlib.Path("pyproject.toml").read_text())["project"]
info = pathlib.Path(sys.argv[1]) / f"robustness_audit-{project['version']}.dist-info"
info.mkdir(parents=True, exist_ok=True)
(info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
groups = project.get("entry-points", {})
(info / "entry_points.txt").write_text(
    "".join(f"[{g}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n" for g, eps in groups.items())
)
PY
export PYTHONPATH="$site:$PWD"
export ROBUSTNESS_CACHE="${ROBUSTNESS_CACHE:-$PWD/.cache/zoo}"
python - <<'PY' || exit 2
import torch
assert torch.cuda.is_available(), "no CUDA device"
print("torch", torch.__version__, "on", torch.cuda.get_device_name(0))
PY
log=${OUT:-${TMPDIR:-/tmp}}
status=0
timeout 180 python -m pytest -q -m gpu -p no:cacheprovider tests 2>&1 | tee "$log/gpu-tests.log" || status=1
timeout 300 python bench/scale.py --gpu 2>&1 | tee "$log/scale-gpu.log" || status=1
timeout 90 python bench/certify.py --device cuda --only speed --repeats 1 2>&1 | tee "$log/certify-gpu.log" || status=1
[ -n "${OUT:-}" ] && cp bench/RESULTS.md "$OUT/"
exit $status
