"""Figures saved as PNG beside the data they describe (matplotlib, Agg backend)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def to_png(fig: "plt.Figure") -> bytes:
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
