#!/usr/bin/env bash
# One prepared GPU check for AdamRAG (issue 3), run once from the repository root on a lent CUDA
# machine after the project is installed there:
#   1. tests/optim/test_adamrag_cuda_paths.py: the for-each, fused (Triton), capturable and CUDA-graph paths
#      against the for-loop path on CUDA, and fused with gamma = 0 against torch's fused Adam;
#   2. adamrag-sens bench optimizer --device cuda --sizes resnet18,200m (all three paths);
#   3. the fused kernel's launch configuration (BLOCK, num_warps) on both sizes.
# Prints a short summary table last; details go under $OUT. Each part has its own timeout, so the
# whole script ends within about 3 minutes even if a part hangs.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$(mktemp -d)}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
START=$SECONDS

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 || true
  "$PY" - <<'EOF'
import sys, torch
try:
    import triton
    tv = triton.__version__
except Exception as err:  # noqa: BLE001
    tv = f"missing ({err})"
print("python", sys.version.split()[0], "| torch", torch.__version__, "| cuda", torch.version.cuda,
      "| triton", tv, "|", torch.cuda.get_device_name() if torch.cuda.is_available() else "NO CUDA")
EOF
} 2>&1 | tee "$OUT/versions.txt"

echo "== 1/3 CUDA correctness: pytest tests/optim/test_adamrag_cuda_paths.py"
timeout 75 "$PY" -m pytest tests/optim/test_adamrag_cuda_paths.py -q -p no:cacheprovider -rfE \
  --junitxml="$OUT/gpu_tests.xml" >"$OUT/gpu_tests.txt" 2>&1
TESTS_RC=$?
tail -n 25 "$OUT/gpu_tests.txt"

echo "== 2/3 adamrag-sens bench optimizer --device cuda --sizes resnet18,200m"
timeout 60 "$PY" -m sensitivity.cli bench optimizer --device cuda --sizes resnet18,200m \
  --paths fused,foreach,forloop --steps 50 --warmup 10 --json "$OUT/bench.json" 2>&1 | tee "$OUT/bench.txt"
BENCH_RC=${PIPESTATUS[0]}
if [ "$BENCH_RC" -ne 0 ] && [ ! -s "$OUT/bench.json" ]; then
  echo "(the CLI failed with rc=$BENCH_RC; calling sensitivity.bench.optimizer_step.bench_optimizer directly)"
  timeout 60 "$PY" - "$OUT" <<'EOF' 2>&1 | tee -a "$OUT/bench.txt"
import json, sys, torch
from rich.console import Console
from sensitivity.bench.optimizer_step import bench_optimizer, results_table
rows = bench_optimizer(device="cuda", sizes=["resnet18", "200m"], paths=["fused", "foreach", "forloop"], steps=50, warmup=10)
Console(width=120).print(results_table(rows))
json.dump({"torch": torch.__version__, "rows": rows}, open(f"{sys.argv[1]}/bench.json", "w"), indent=2)
EOF
  BENCH_RC=${PIPESTATUS[0]}
fi

echo "== 3/3 fused kernel launch configurations"
timeout 45 "$PY" - "$OUT" <<'EOF' 2>&1 | tee "$OUT/sweep.txt"
import json, sys
import torch
from sensitivity.bench.optimizer_step import bench_optimizer
from sensitivity.optim import _adamrag_triton as kernel

out = sys.argv[1]
default = (kernel._BLOCK, kernel._NUM_WARPS)
sweep = []
for block, warps in [(1024, 4), (2048, 4), (2048, 8), (4096, 8), (4096, 16)]:
    kernel._BLOCK, kernel._NUM_WARPS = block, warps
    try:
        rows = bench_optimizer(device="cuda", sizes=["resnet18", "200m"], paths=["fused"], steps=30, warmup=5)
    except Exception as err:  # noqa: BLE001
        print(f"BLOCK={block} warps={warps}: failed: {type(err).__name__}: {err}")
        continue
    for r in rows:
        r.update(block=block, num_warps=warps)
        sweep.append(r)
        print(f"BLOCK={block:5d} warps={warps:2d} {r['size']:9s} Adam fused {r['adam_ms']:.3f} ms  "
              f"AdamRAG fused {r['adamrag_ms'] if r['adamrag_ms'] is None else round(r['adamrag_ms'], 3)} ms  "
              f"ratio {r['ratio'] if r['ratio'] is None else round(r['ratio'], 3)}  {r['note']}")
kernel._BLOCK, kernel._NUM_WARPS = default
json.dump({"default": default, "rows": sweep}, open(f"{out}/sweep.json", "w"), indent=2)
EOF

echo
echo "== summary (targets: 200m fastest path <= 1.35 x Adam fused; resnet18 <= 1.5 x Adam fused)"
"$PY" - "$OUT" <<'EOF'
import json, os, sys
out = sys.argv[1]
def load(name):
    path = os.path.join(out, name)
    return json.load(open(path))["rows"] if os.path.exists(path) else []
bench, sweep = load("bench.json"), load("sweep.json")
print(f"{'size':9s} {'Adam fused':>10s} {'RAG fused':>10s} {'RAG foreach':>11s} {'best sweep':>18s} {'ratio':>6s} {'target':>6s}")
for size, target in (("resnet18", 1.5), ("200m", 1.35)):
    rows = {r["path"]: r for r in bench if r["size"] == size}
    adam = rows.get("fused", {}).get("adam_ms")
    rag_fused = rows.get("fused", {}).get("adamrag_ms")
    rag_foreach = rows.get("foreach", {}).get("adamrag_ms")
    swept = [r for r in sweep if r["size"] == size and r["adamrag_ms"]]
    best = min(swept, key=lambda r: r["adamrag_ms"] / r["adam_ms"], default=None)
    candidates = [x for x in (rag_fused, rag_foreach) if x]
    ratios = [x / adam for x in candidates] if adam else []
    if best is not None:
        ratios.append(best["ratio"])  # measured against Adam fused in the same sweep run
    ratio = min(ratios, default=None)
    fmt = lambda x: "n/a" if x is None else f"{x:.3f}"
    best_s = "n/a" if best is None else f"{best['adamrag_ms']:.3f}@{best['block']}/{best['num_warps']}({best['ratio']:.2f})"
    print(f"{size:9s} {fmt(adam):>10s} {fmt(rag_fused):>10s} {fmt(rag_foreach):>11s} {best_s:>18s} "
          f"{'n/a' if ratio is None else f'{ratio:.2f}':>6s} {target:>6.2f}")
EOF
echo "tests rc=$TESTS_RC  bench rc=$BENCH_RC  elapsed $((SECONDS - START)) s  details in $OUT"
