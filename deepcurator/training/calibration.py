"""Calibration of the CNN's scores on the validation split (Platt scaling).

The original architecture (dropout after every convolution block, then batch norm) scores
differently in training and inference mode, so its raw outputs rank tracks well but sit on
one side of 0.5. A score "over 50 = good" needs calibrated probabilities: a logistic
regression of the validation labels on the validation logits gives ``sigmoid(a·z + c)``,
and folding ``a`` and ``c`` into the last Dense layer keeps the model a plain Keras model
(the server and ``rate`` need nothing else). Only the validation split is used.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def logit(p: np.ndarray) -> np.ndarray:
    """The log-odds of probabilities ``p`` (any shape), clipped away from 0 and 1."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    return np.log(p) - np.log1p(-p)


def platt(p: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """``(a, c)`` such that ``sigmoid(a·logit(p) + c)`` best fits the 0/1 labels ``y``
    (``p``, ``y``: shape ``(n,)``); ``(1, 0)`` when ``y`` holds one class only."""
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(y).astype(int)
    if len(np.unique(y)) < 2:
        return 1.0, 0.0
    lr = LogisticRegression(C=1e4).fit(logit(p).reshape(-1, 1), y)
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


def fold_into_output(model: Any, a: float, c: float) -> None:
    """Make ``model``'s last Dense layer (sigmoid output) compute ``sigmoid(a·z + c)``."""
    layer = model.layers[-1]
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel * a, bias * a + c])
