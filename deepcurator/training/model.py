"""The CNN (docs/ARCHITECTURE.md, "The model"), after Choi et al. 2016, in Keras 3.

Input: log-mel dB values, shape ``(batch, 128, 1291, 1)``; output: the probability that the
track is "good", shape ``(batch, 1)``. Normalisation of the dB input is the first layer, so
stored features stay model-independent.

Two heads (``train.head``):

- ``flatten`` (the default, Choi et al.): five Conv–BatchNorm–ReLU–MaxPool–Dropout blocks
  (:data:`BLOCKS`), Flatten, Dense 50, sigmoid;
- ``global_max``: the first :data:`GLOBAL_MAX_BLOCKS` blocks without dropout, then the
  maximum of each channel over the whole time-frequency map, Dense 50, sigmoid. It asks
  "does this local pattern occur anywhere in the slice?", whatever its place: for short,
  local events (the demo corpus' scrambled bars, bench/RESULTS.md "Demo corpus") it learns
  from far fewer tracks than the flatten head, which did not learn them at the demo's budget.
"""

from __future__ import annotations

from typing import Any

from deepcurator.features import N_MELS, SLICE_FRAMES

BLOCKS = ((64, (2, 4)), (128, (2, 4)), (128, (2, 4)), (128, (3, 5)), (64, (4, 4)))
HEADS = ("flatten", "global_max")
GLOBAL_MAX_BLOCKS = 3


def build_model(width: float = 1.0, db_mean: float = -40.0, db_std: float = 20.0, head: str = "flatten") -> Any:
    """The CNN with ``width`` × the original filters and ``head`` (one of :data:`HEADS`);
    ``db_mean``/``db_std`` (dB) scale the input."""
    import keras
    from keras import layers

    if head not in HEADS:
        raise ValueError(f"unknown head {head!r} (one of {', '.join(HEADS)})")
    inputs = keras.Input(shape=(N_MELS, SLICE_FRAMES, 1), name="logmel_db")
    x = layers.Normalization(mean=db_mean, variance=db_std**2, name="db_norm")(inputs)
    blocks = BLOCKS if head == "flatten" else BLOCKS[:GLOBAL_MAX_BLOCKS]
    for i, (filters, pool) in enumerate(blocks):
        x = layers.Conv2D(max(1, round(filters * width)), 3, padding="same", name=f"conv{i + 1}")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"bn{i + 1}")(x)
        x = layers.ReLU(name=f"relu{i + 1}")(x)
        x = layers.MaxPooling2D(pool, name=f"pool{i + 1}")(x)
        if head == "flatten":
            x = layers.Dropout(0.25, name=f"drop{i + 1}")(x)
    pooled = layers.Flatten(name="flatten") if head == "flatten" else layers.GlobalMaxPooling2D(name="global_max")
    x = pooled(x)
    x = layers.Dense(50, activation="relu", name="dense")(x)
    x = layers.Dropout(0.5, name="drop_dense")(x)
    outputs = layers.Dense(1, activation="sigmoid", dtype="float32", name="good")(x)
    return keras.Model(inputs, outputs, name="deepcurator_cnn")
