"""Accuracy of the shipped MNIST classifier (the judge of chapters 05 and 07) on the bundled test digits.

    .venv/bin/python bench/classifier_accuracy.py

Writes bench/results/classifier_accuracy.md: accuracy, the share recognised with confidence >= 0.9,
and the FID of real test digits against real training digits (the floor any generator is compared to).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import torch

from diffusion_lab.data import mnist_tensors
from diffusion_lab.judges.metrics import class_accuracy, class_probabilities, fid, recognised_fraction
from diffusion_lab.pretrained import load_pretrained

RESULTS = Path(__file__).resolve().parent / "results" / "classifier_accuracy.md"


def main() -> None:
    clf = load_pretrained("mnist_classifier").model
    test_x, test_y = mnist_tensors("test")
    train_x, _ = mnist_tensors("train", n=2000)
    probs = class_probabilities(clf, test_x)
    acc = class_accuracy(probs, test_y)
    recognised = recognised_fraction(probs, 0.9)
    floor = fid(clf, test_x, train_x)
    lines = [f"# MNIST classifier ({dt.date.today().isoformat()}, torch {torch.__version__})", "",
             "Measured by `.venv/bin/python bench/classifier_accuracy.py` on the 2,000 bundled test digits.", "",
             "| measure | value |", "|---|---|",
             f"| accuracy | {acc:.2%} |",
             f"| recognised with confidence >= 0.9 | {recognised:.2%} |",
             f"| FID, 2,000 test vs 2,000 training digits (real vs real) | {floor:.2f} |"]
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
