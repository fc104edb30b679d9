#!/usr/bin/env bash
# The one prepared run on a lent CUDA machine (the H200): installs the carried wheels, runs the
# AdamRAG GPU check (scripts/gpu_optim_check.sh: CUDA tests + optimizer step benchmark), then a
# small real resnet18 sweep on Fashion-MNIST on the GPU and its report.
# Carry: .wheels (optuna, lion-pytorch, ...; ../shared/gpu/wheels.sh) and .fmnist (the four IDX .gz
# files under .fmnist/fashion-mnist/). Everything comes back as two archives and a summary.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$(mktemp -d)}"
export PYTHONUNBUFFERED=1
START=$SECONDS
python3 -m pip install -q --no-index --no-deps .wheels/*.whl 2>&1 | grep -v -i "warning" | tail -3
python3 -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | tail -3
mkdir -p "$OUT/optim" "$OUT/resnet"

OUT="$OUT/optim" timeout 200 bash scripts/gpu_optim_check.sh 2>&1 | tee "$OUT/optim/log.txt" | tail -n 45

echo "== resnet18 on Fashion-MNIST (real data), CUDA, 4 optimizers x 4 lrs x beta1 0.9, 2 epochs of 20k images"
timeout 200 adamrag-sens sweep --task resnet18 --dataset fashion-mnist --data-dir .fmnist --train-size 20000 \
  --val-size 5000 --epochs 2 --batch-size 256 --optimizers adamrag,adam,nag,lion --lr-points 4 --beta1 0.9 \
  --device cuda --storage "sqlite:///$OUT/resnet/gpu.db" --study resnet18-fmnist-gpu 2>&1 | tail -n 6 | tee "$OUT/resnet/sweep.txt"
timeout 60 adamrag-sens report --storage "sqlite:///$OUT/resnet/gpu.db" --study resnet18-fmnist-gpu \
  --out "$OUT/resnet/report" 2>&1 | tail -n 8
python3 - "$OUT/resnet/gpu.db" <<'PY'
import sys, optuna
optuna.logging.set_verbosity(optuna.logging.WARNING)
s = optuna.load_study(study_name="resnet18-fmnist-gpu", storage=f"sqlite:///{sys.argv[1]}")
print(f"{'optimizer':9s} {'lr':>9s} {'val_loss':>9s} {'val_acc':>7s} {'img/s':>8s} {'wall s':>7s} diverged")
for t in sorted(s.trials, key=lambda t: (t.params.get("optimizer", ""), t.params.get("lr", 0))):
    a = t.user_attrs
    if t.state.name != "COMPLETE":
        print(t.number, t.state.name, a.get("error")); continue
    print(f"{t.params['optimizer']:9s} {t.params['lr']:9.3g} {t.value:9.4f} {a['val_acc'][-1] if a['val_acc'] else float('nan'):7.3f} "
          f"{a['throughput']:8.0f} {a['wall_time_s']:7.1f} {a['diverged']}")
PY
(cd "$OUT" && tar czf optim.tar.gz optim && tar czf resnet.tar.gz resnet && rm -rf optim resnet)
echo "elapsed $((SECONDS - START)) s"
