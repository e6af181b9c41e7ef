#!/usr/bin/env bash
# Rebuild results/ from the MLflow store its runs were recorded in (the runs are named by id:
# every folder here is the report `bench report` builds from exactly these runs).
#   results/publish.sh sqlite:////work/main/.runs/issue15/mlflow.db
set -euo pipefail
cd "$(dirname "$0")/.."
export MLFLOW_TRACKING_URI=${1:?usage: results/publish.sh TRACKING_URI}
bench=${BENCH:-.venv/bin/bench}
report() {  # folder run-id
    rm -rf "results/$1" && "$bench" report --run-id "$2" --out "results/$1" --format markdown --flat
}
# Part 1: Fashion-MNIST, seed 000's six variants, default vs tuned over 5 seeds (default study)
report core-fashion-mnist 7679ac97135741f78ce3903c8070cdb7
report core-fashion-mnist/tuning/vanilla-shallow dc3b14d903604442a6a171cfc3029b05
report core-fashion-mnist/tuning/vanilla-deep 9308e9575e8e45e1a200657f2046a69c
report core-fashion-mnist/tuning/dropout-shallow 754bd32c10bd442b8b02446ba9ca95f0
report core-fashion-mnist/tuning/dropout-deep 293215454b5940318c53aa25ceaa17a6
report core-fashion-mnist/tuning/batchnorm-shallow 1c5b6573e3f749f9b41320ca427a24d4
report core-fashion-mnist/tuning/batchnorm-residual-deep 491d12ae348b4600878f4e412cb33ebd
# The tuning objective (results/objective.md): the best-epoch study's comparison
report core-fashion-mnist-best-epoch b4961cc3ec904ce4a762f674605cdb03
# Part 2: seed notebook 000 at its own protocol (batch 32, 50 epochs), 3 seeds
report seed-000 ba6824648acb4902bbc743f32d7a2f9b
# Part 3: MNIST, seed notebook 004's three MLPs, default vs tuned over 5 seeds
report seed-004 a4ffec5d2914400aa31a2207bdae8c26
report seed-004/tuning/mlp-64-64-dropout 205ff4bbcc634b5d8a472566c76fd7ee
report seed-004/tuning/mlp-400-300-dropout 88bbbddc442145ac882b5119f59511a0
report seed-004/tuning/mlp-64-16-l2 e113df473cf74749a54eac870b3c237b
# Part 3: MNIST, seed notebook 001's depth study (2, 3, 5 hidden layers, plain vs dropout + batch norm)
report seed-001 4d726135ffbd4295916551478a9a1c2d
report seed-001/tuning/mlp2-plain fb136e21171c4b9585a8df5ba37597ee
report seed-001/tuning/mlp2-dropout-bn 575ce501a23442459507fb12800a9cf3
report seed-001/tuning/mlp3-plain d06a71ef9fd141a381eb37ac6f774bfb
report seed-001/tuning/mlp3-dropout-bn bfa8e5f0cdcc46c78aec3faca2b10ce6
report seed-001/tuning/mlp5-plain 461fe752937445b09dd8e5cea5255af5
report seed-001/tuning/mlp5-dropout-bn a4be7301a58245a4af72edbbf26e1f73
# Part 4: how far an MLP gets, MNIST (seed 004's 400-300 + dropout, 60 epochs, best epoch kept)
report best-mlp-mnist ed5f568db0504a079b879d3b78932a7b
report best-mlp-mnist/tuning/mlp-400-300-dropout 489f29c33b4348ddb09cdccf2a47ec81
# Part 4: how far an MLP gets, Fashion-MNIST (vanilla-deep and dropout-deep, 60 epochs, best epoch kept)
report best-mlp-fashion-mnist 31408165fd4a44138678ec157f7fe077
report best-mlp-fashion-mnist/tuning/vanilla-deep 5f04c3ee1549413f8eee0beb619b016e
report best-mlp-fashion-mnist/tuning/dropout-deep 439bd2a06e2748a79b14bc865d27b1e5
