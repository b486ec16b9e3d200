"""Figures saved as PNG beside the data they describe (matplotlib, Agg backend)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def to_png(fig: plt.Figure) -> bytes:
    """Render ``fig`` to PNG bytes (no timestamp, so identical figures give identical bytes)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def score_histogram(scores: np.ndarray, good_cut: float, bad_cut: float, n: int) -> bytes:
    """Histogram of item scores (0..1) with the good / not-good cut-offs marked."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.hist(scores, bins=100, color="#4c72b0")
    ax.axvline(good_cut, color="#2ca02c", lw=2, label=f"good (top {n:,}) ≥ {good_cut:.3f}")
    ax.axvline(bad_cut, color="#d62728", lw=2, label=f"not-good (bottom {n:,}) ≤ {bad_cut:.3f}")
    ax.set_yscale("log")
    ax.set_xlabel("item score (0..1)")
    ax.set_ylabel("YouTube ids (log scale)")
    ax.set_title("Discogs item scores, one per YouTube id")
    ax.legend()
    return to_png(fig)


def logmel_picture(S: np.ndarray, title: str, sr: int = 22050, hop: int = 512) -> bytes:
    """A log-mel spectrogram (``S``: dB values, shape ``(n_mels, frames)``) as a picture:
    time in seconds across, mel band up, on a fixed -80..+30 dB colour scale so pictures of
    different tracks compare (a hiss floor, a muddy mix's missing highs, clipping's smear)."""
    fig, ax = plt.subplots(figsize=(12, 4.2))
    seconds = S.shape[1] * hop / sr
    img = ax.imshow(S, origin="lower", aspect="auto", cmap="magma", vmin=-80, vmax=30,
                    extent=(0.0, seconds, 0, S.shape[0]), interpolation="nearest")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("mel band (0 = 0 Hz, 127 = 11 kHz)")
    ax.set_title(title)
    fig.colorbar(img, ax=ax, label="dB")
    return to_png(fig)


def training_curves(history: list[dict]) -> bytes:
    """Loss (train, val), validation ROC-AUC (slice, track) and learning rate per epoch."""
    epochs = [h["epoch"] for h in history]

    def series(name: str) -> list[float]:
        return [np.nan if h.get(name) is None else h[name] for h in history]

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    axes[0].plot(epochs, series("loss"), "o-", label="train")
    axes[0].plot(epochs, series("val_loss"), "o-", label="validation")
    axes[0].set_title("binary cross-entropy")
    axes[1].plot(epochs, series("val_roc_auc"), "o-", label="validation slices")
    axes[1].plot(epochs, series("val_track_roc_auc"), "o-", label="validation tracks")
    axes[1].axhline(0.5, color="grey", lw=1, ls=":")
    axes[1].set_title("validation ROC-AUC")
    axes[2].plot(epochs, series("learning_rate"), "o-")
    axes[2].set_yscale("log")
    axes[2].set_title("learning rate")
    for ax in axes:
        ax.set_xlabel("epoch")
    axes[0].legend()
    axes[1].legend()
    return to_png(fig)


def roc_curves(curves: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]) -> bytes:
    """ROC curves at slice and track level, one line per model: ``{model: {level: (y, p)}}``."""
    from sklearn.metrics import roc_auc_score, roc_curve

    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    for ax, level in zip(axes, ("slice", "track"), strict=True):
        for model, levels in curves.items():
            y, p = levels[level]
            if len(np.unique(y)) < 2:
                continue
            fpr, tpr, _ = roc_curve(y, p)
            ax.plot(fpr, tpr, label=f"{model} (AUC {roc_auc_score(y, p):.3f})")
        ax.plot([0, 1], [0, 1], color="grey", lw=1, ls=":")
        ax.set_title(f"test {level}s")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.legend(loc="lower right")
    return to_png(fig)


def class_histograms(levels: dict[str, tuple[np.ndarray, np.ndarray]]) -> bytes:
    """Score histograms per true class at slice and track level: ``{level: (y, p)}``."""
    fig, axes = plt.subplots(1, len(levels), figsize=(5.5 * len(levels), 4))
    for ax, (level, (y, p)) in zip(np.atleast_1d(axes), levels.items(), strict=True):
        bins = np.linspace(0, 1, 21)
        ax.hist(p[y == 0], bins=bins, alpha=0.6, color="#d62728", label="not-good")
        ax.hist(p[y == 1], bins=bins, alpha=0.6, color="#2ca02c", label="good")
        ax.set_title(f"test {level}s: score by true class")
        ax.set_xlabel("score (probability of good)")
        ax.set_ylabel(f"{level}s")
        ax.legend()
    return to_png(fig)


def reliability_diagram(curves: dict[str, dict[str, list[float]]]) -> bytes:
    """Reliability curves ``{name: {"mean_score", "fraction_good", "count"}}`` against the diagonal."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls=":", label="perfectly calibrated")
    for name, c in curves.items():
        ax.plot(c["mean_score"], c["fraction_good"], "o-", label=name)
    ax.set_xlabel("mean score in bin")
    ax.set_ylabel("fraction good in bin")
    ax.set_title("calibration (test split)")
    ax.legend()
    return to_png(fig)
