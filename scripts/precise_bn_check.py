"""How many training batches precise BN needs, and what it costs: one measured run.

Trains resnet18 once (the product's task, optimizer factory and batches) for the given budget, then
evaluates the same weights with BatchNorm's running averages from training (what the product did
before --precise-bn) and with statistics recomputed on N training batches for each N given,
timing a recalibration against a training step. The training run itself is what a trial with
--precise-bn 0 trains (the recalibration does not change it).

    python scripts/precise_bn_check.py --optimizer adamrag --lr 1e-3 --train-size 1000 --val-size 500 \
        --batch-size 128 --epochs 1 --batches 1,2,4,8,16

Prints one line per N: validation loss and accuracy, and seconds per recalibration.
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch

from sensitivity.optim.registry import build_optimizer
from sensitivity.tasks import get_task
from sensitivity.train import load_task_data, recalibrate_batchnorm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--optimizer", default="adam")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--beta1", type=float, default=0.9)
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--train-size", type=int, default=1000)
    ap.add_argument("--val-size", type=int, default=500)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batches", default="1,2,4,8,16")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    task = get_task("resnet18")
    config = task.config(dataset=args.dataset, train_size=args.train_size, val_size=args.val_size,
                         batch_size=args.batch_size)
    dev = torch.device("cpu")
    data = load_task_data(task, config, dev)
    torch.manual_seed(args.seed)
    model = task.build_model(config, data)
    opt = build_optimizer(args.optimizer, model.parameters(), {"lr": args.lr, "beta1": args.beta1})
    gen = torch.Generator().manual_seed(args.seed)
    model.train()
    losses, t0, steps = [], time.perf_counter(), 0
    for _ in range(args.epochs):
        for batch in task.batches(config, data, model, gen):
            loss, _ = task.loss(model, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            steps += 1
    step_s = (time.perf_counter() - t0) / steps
    print(f"{args.optimizer} lr={args.lr:g} beta1={args.beta1:g}: {steps} steps of {args.batch_size} "
          f"({args.epochs} epoch(s) of {len(data.x_train)} images), last epoch mean training loss "
          f"{sum(losses[-(steps // args.epochs):]) / (steps // args.epochs):.3f}; {step_s:.2f} s per training step")
    m = task.evaluate(config, model, data, False)
    print(f"running averages from training: val_loss {m['val_loss']:.3f}  val_acc {m['val_acc']:.3f}")
    per_epoch = task.steps_per_epoch(config, data)
    for n in (int(v) for v in args.batches.split(",")):
        used = min(n, per_epoch)
        bn_gen = torch.Generator().manual_seed(args.seed)
        t = time.perf_counter()
        batches = task.batches(config, data, model, bn_gen)
        recalibrate_batchnorm(model, itertools.islice(batches, used), lambda b: task.loss(model, b))
        secs = time.perf_counter() - t
        m = task.evaluate(config, model, data, False)
        print(f"precise BN on {n:3d} batches ({used} used, {used * args.batch_size} images): val_loss {m['val_loss']:.3f}  "
              f"val_acc {m['val_acc']:.3f}  recalibration {secs:.1f} s = {secs / step_s:.1f} training steps")


if __name__ == "__main__":
    main()
