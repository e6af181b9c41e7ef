"""Every model the seed notebooks train, declared as data and registered by name.

Each declaration follows its notebook layer for layer; the parameter counts the notebooks
print are checked in ``tests/test_variants.py`` and by every study that lists them.

Two placements are written in an equivalent form rather than literally:

* "relu -> Dropout" before a pooling layer or a batch norm is declared as dropout right
  after the linear layer (``dropout_place="pre"``). Dropout zeroes and scales by a positive
  constant, so ``relu(dropout(z)) == dropout(relu(z))``: the same function, the same mask.
* Seed 001's last block, "Dense -> relu -> Dropout -> BatchNorm", is declared the same way
  with ``batch_norm="post"``.
"""

from __future__ import annotations

from bench.models.registry import register
from bench.models.spec import Conv, Dense, Variant

# --------------------------------------------------------------------------- seed 000


def _deep(**kw: object) -> tuple[Dense, ...]:
    return tuple(Dense(512, **kw) for _ in range(6))  # type: ignore[arg-type]


register(
    Variant(
        "vanilla-shallow",
        family="vanilla",
        group="shallow",
        blocks=(Dense(128),),
        description="seed 000: Dense 128 relu",
    )
)
register(
    Variant(
        "vanilla-deep",
        family="vanilla",
        group="deep",
        blocks=_deep(),
        description="seed 000: 6 x Dense 512 relu",
    )
)
register(
    Variant(
        "dropout-shallow",
        family="dropout",
        group="shallow",
        blocks=(Dense(128, dropout=0.5),),
        description="seed 000: Dense 128 relu -> Dropout 0.5",
    )
)
register(
    Variant(
        "dropout-deep",
        family="dropout",
        group="deep",
        blocks=_deep(dropout=0.5),
        description="seed 000: 6 x (Dense 512 relu -> Dropout 0.5)",
    )
)
register(
    Variant(
        "batchnorm-shallow",
        family="batchnorm",
        group="shallow",
        blocks=(Dense(128, batch_norm="post"),),
        description="seed 000: Dense 128 relu -> BatchNorm",
    )
)
register(
    Variant(
        "batchnorm-residual-deep",
        family="batchnorm",
        group="deep",
        blocks=(
            Dense(512, batch_norm="post"),
            Dense(512, batch_norm="post"),
            Dense(512, batch_norm="post", residual_from=0),  # skip1 = out1 + out3
            Dense(512, batch_norm="post"),
            Dense(512, batch_norm="post", residual_from=2),  # skip2 = skip1 + out5
            Dense(512, batch_norm="post"),
        ),
        description=(
            "seed 000: 6 x (Dense 512 relu -> BatchNorm), skip1 = out1 + out3, skip2 = skip1 + out5"
        ),
    )
)

CORE_VARIANTS = (
    "vanilla-shallow",
    "vanilla-deep",
    "dropout-shallow",
    "dropout-deep",
    "batchnorm-shallow",
    "batchnorm-residual-deep",
)

# --------------------------------------------------------------------------- seed 001
# MNIST MLPs of depth 2, 3 and 5, each plain and with the notebook's dropout + batch norm.
# Every layer uses kernel_initializer='normal' (N(0, 0.05)), except model 1b's output layer,
# which the notebook left at the Keras default (Glorot uniform).

register(
    Variant(
        "mlp2-plain",
        family="plain",
        group="2-hidden",
        blocks=(Dense(1024), Dense(512)),
        kernel_initializer="normal",
        description="seed 001 model 1a: 1024 -> 512, normal init",
    )
)
register(
    Variant(
        "mlp2-dropout-bn",
        family="dropout-bn",
        group="2-hidden",
        blocks=(Dense(1024, dropout=0.3), Dense(512, batch_norm="post")),
        kernel_initializer="normal",
        output_initializer="glorot_uniform",
        description=(
            "seed 001 model 1b: 1024 -> Dropout 0.3 -> 512 -> BatchNorm (output layer: "
            "default init)"
        ),
    )
)
register(
    Variant(
        "mlp3-plain",
        family="plain",
        group="3-hidden",
        blocks=(Dense(512), Dense(256), Dense(128)),
        kernel_initializer="normal",
        description="seed 001 model 2a: 512 -> 256 -> 128, normal init",
    )
)
register(
    Variant(
        "mlp3-dropout-bn",
        family="dropout-bn",
        group="3-hidden",
        blocks=(Dense(512, dropout=0.5), Dense(256, batch_norm="post"), Dense(128)),
        kernel_initializer="normal",
        description="seed 001 model 2b: 512 -> Dropout 0.5 -> 256 -> BatchNorm -> 128",
    )
)
register(
    Variant(
        "mlp5-plain",
        family="plain",
        group="5-hidden",
        blocks=(Dense(2048), Dense(1024), Dense(512), Dense(256), Dense(128)),
        kernel_initializer="normal",
        description="seed 001 model 3a: 2048 -> 1024 -> 512 -> 256 -> 128, normal init",
    )
)
register(
    Variant(
        "mlp5-dropout-bn",
        family="dropout-bn",
        group="5-hidden",
        blocks=(
            Dense(2048, dropout=0.5),
            Dense(1024, batch_norm="post"),
            Dense(512, dropout=0.5),
            Dense(256, batch_norm="post"),
            # relu -> Dropout -> BatchNorm, written as Dropout -> relu -> BatchNorm (same function)
            Dense(128, dropout=0.5, dropout_place="pre", batch_norm="post"),
        ),
        kernel_initializer="normal",
        description=(
            "seed 001 model 3b: 2048 -> D0.5 -> 1024 -> BN -> 512 -> D0.5 -> 256 -> BN -> "
            "128 -> D0.5 -> BN"
        ),
    )
)

# --------------------------------------------------------------------------- seed 002
# LeNet-5 with tanh and average pooling on MNIST: C1 6@5x5 same (no bias) -> S2 avgpool 2
# stride 1 -> C3 16@5x5 (no bias) -> S4 avgpool 2 -> C5 120@5x5 -> FC6 84 -> softmax.
# Batch norm and dropout sit between the linear layer and tanh ("pre"), as in the notebook.


def _lenet_tanh(*, batch_norm: bool, dropout: float) -> tuple[Conv | Dense, ...]:
    bn = "pre" if batch_norm else None
    common = {"activation": "tanh", "batch_norm": bn, "dropout": dropout, "dropout_place": "pre"}
    return (
        Conv(6, 5, padding="same", use_bias=False, pool="avg", pool_strides=1, **common),  # type: ignore[arg-type]
        Conv(16, 5, use_bias=False, pool="avg", **common),  # type: ignore[arg-type]
        Conv(120, 5, **common),  # type: ignore[arg-type]
        Dense(84, **common),  # type: ignore[arg-type]
    )


register(
    Variant(
        "lenet5-tanh-bn",
        family="batchnorm",
        group="lenet5-tanh",
        blocks=_lenet_tanh(batch_norm=True, dropout=0.0),
        description="seed 002 (4.2): batch norm on the hidden layers, input scaled to [0, 1]",
    )
)
register(
    Variant(
        "lenet5-tanh-bn-input",
        family="batchnorm-input",
        group="lenet5-tanh",
        blocks=_lenet_tanh(batch_norm=True, dropout=0.0),
        input_batch_norm=True,
        description="seed 002 (4.3): batch norm on all layers, the input too",
    )
)
register(
    Variant(
        "lenet5-tanh-dropout",
        family="dropout",
        group="lenet5-tanh",
        blocks=_lenet_tanh(batch_norm=False, dropout=0.5),
        input_dropout=0.2,
        description="seed 002 (4.4): dropout only, 0.2 on the input and 0.5 after each layer",
    )
)
register(
    Variant(
        "lenet5-tanh-dropout-bn",
        family="dropout-batchnorm",
        group="lenet5-tanh",
        blocks=_lenet_tanh(batch_norm=True, dropout=0.5),
        input_dropout=0.2,
        input_batch_norm=True,
        description="seed 002 (4.5): dropout (0.2 input, 0.5 hidden) and batch norm on all layers",
    )
)

# --------------------------------------------------------------------------- seed 003
# Fashion-MNIST on standardised inputs: the part 3 MLP and part 4's LeNet-5 with ReLU and
# max pooling (C1 6@5x5 same -> pool -> C3 16@5x5 same -> pool -> C5 120@5x5 -> FC 84).
# The convolutions use he_uniform (the BN model's first one 'uniform'); the dense layers
# keep the Keras default, as in the notebook.

register(
    Variant(
        "mlp-128-64",
        family="mlp",
        group="mlp",
        blocks=(Dense(128), Dense(64)),
        description="seed 003 part 3: Dense 128 -> Dense 64 -> softmax",
    )
)


def _lenet_relu(*, dropout: bool = False, batch_norm: bool = False, first_init: str = "he_uniform"):
    conv_dropout = (
        {"dropout": 0.1, "dropout_place": "pre"} if dropout else {}
    )  # relu -> Dropout -> pool
    bn = "post" if batch_norm else None  # relu -> BatchNorm -> pool
    return (
        Conv(
            6,
            5,
            padding="same",
            pool="max",
            batch_norm=bn,
            kernel_initializer=first_init,
            **conv_dropout,
        ),
        Conv(
            16,
            5,
            padding="same",
            pool="max",
            batch_norm=bn,
            kernel_initializer="he_uniform",
            **conv_dropout,
        ),
        Conv(120, 5, kernel_initializer="he_uniform"),
        Dense(84, dropout=0.5 if dropout else 0.0),
    )


register(
    Variant(
        "lenet5-relu",
        family="plain",
        group="lenet5-relu",
        blocks=_lenet_relu(),
        description="seed 003 part 4.2: LeNet-5, ReLU, max pooling",
    )
)
register(
    Variant(
        "lenet5-relu-dropout",
        family="dropout",
        group="lenet5-relu",
        blocks=_lenet_relu(dropout=True),
        description=(
            "seed 003 part 4.3.1: LeNet-5 with dropout 0.1 after the first two "
            "convolutions, 0.5 after FC 84"
        ),
    )
)
register(
    Variant(
        "lenet5-relu-bn",
        family="batchnorm",
        group="lenet5-relu",
        blocks=_lenet_relu(batch_norm=True, first_init="uniform"),
        description="seed 003 part 4.3.2: LeNet-5 with batch norm after the first two convolutions",
    )
)

# --------------------------------------------------------------------------- seed 004
# MNIST MLPs trained with RMSprop (lr 1e-3, batch 128).

register(
    Variant(
        "mlp-64-64-dropout",
        family="dropout",
        group="mlp-rmsprop",
        blocks=(Dense(64, dropout=0.2), Dense(64, dropout=0.2)),
        description="seed 004 model 1: 64 -> Dropout 0.2 -> 64 -> Dropout 0.2",
    )
)
register(
    Variant(
        "mlp-400-300-dropout",
        family="dropout",
        group="mlp-rmsprop",
        blocks=(Dense(400, dropout=0.4), Dense(300, dropout=0.4)),
        description="seed 004 model 2: 400 -> Dropout 0.4 -> 300 -> Dropout 0.4",
    )
)
register(
    Variant(
        "mlp-64-16-l2",
        family="l2",
        group="mlp-rmsprop",
        blocks=(Dense(64, l2=1e-4, dropout=0.5), Dense(16, l2=1e-4)),
        description="seed 004 model 3: 64 (L2 1e-4) -> Dropout 0.5 -> 16 (L2 1e-4)",
    )
)
