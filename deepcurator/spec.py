"""The feature spec: the one definition of the features, which travels with them and with every model.

:data:`SPEC` is what this code computes (:mod:`deepcurator.features` derives every constant
from it). The process stage writes it beside the features (``feature_spec.json`` in the
store, :mod:`deepcurator.layout`) and refuses to add features to a store holding another
spec; a training run records the spec of the features it read (``runs/<id>/feature_spec.json``)
and stores it inside its ``model.keras`` (a file in the Keras zip that Keras ignores), so a
model copied anywhere carries it; the scorer refuses a model whose spec differs from the one
in use, in one line naming the fields (:func:`check_same`).

Bump :attr:`FeatureSpec.version` with any change that alters feature values.
"""

from __future__ import annotations

import dataclasses
import json
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepcurator.errors import ConfigError

MODEL_MEMBER = "deepcurator_feature_spec.json"  # the spec's file inside a .keras zip


@dataclass(frozen=True)
class FeatureSpec:
    """How audio becomes model input. Units: Hz, samples, seconds, dB.

    Decode to mono (mean of the channels) at ``sample_rate``; STFT of ``n_fft`` samples every
    ``hop`` samples with a periodic ``window``, frames centred (``pad_mode`` padding);
    ``n_mels`` mel bands (``mel_scale`` scale, ``mel_norm`` norm) from ``fmin`` to
    ``sample_rate / 2``, ``power`` spectrogram; decibels ``10·log10(max(S, db_amin))``, an
    absolute floor, never relative to the track; non-overlapping slices of
    :attr:`slice_frames` frames from the start; stored as ``stored_dtype``.
    """

    version: int = 1
    sample_rate: int = 22050
    n_fft: int = 2048
    hop: int = 512
    window: str = "hann"
    center: bool = True
    pad_mode: str = "constant"
    n_mels: int = 128
    mel_scale: str = "slaney"
    mel_norm: str = "slaney"
    fmin: float = 0.0
    power: float = 2.0
    db_amin: float = 1e-10
    slice_seconds: float = 30.0
    stored_dtype: str = "float16"

    @property
    def slice_frames(self) -> int:
        """Frames in one slice: ``slice_seconds · sample_rate / hop``, rounded down (1,291)."""
        return int(self.slice_seconds * self.sample_rate // self.hop)

    @property
    def db_floor(self) -> float:
        """The lowest value in dB: ``10·log10(db_amin)`` (-100)."""
        return 10.0 * math.log10(self.db_amin)

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data, with the derived slice length."""
        return {**dataclasses.asdict(self), "slice_frames": self.slice_frames}

    def to_json(self) -> bytes:
        return (json.dumps(self.to_dict(), indent=2) + "\n").encode()

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "feature spec") -> FeatureSpec:
        """A spec from :meth:`to_dict`'s data; unknown fields or a wrong ``slice_frames`` raise
        :class:`ConfigError` naming ``where``."""
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: not a feature spec (a JSON object is expected)")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known - {"slice_frames"})
        if unknown:
            raise ConfigError(f"{where}: unknown feature spec fields {', '.join(unknown)} (from a newer version?)")
        try:
            spec = cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:
            raise ConfigError(f"{where}: not a feature spec ({exc})") from None
        if "slice_frames" in data and data["slice_frames"] != spec.slice_frames:
            raise ConfigError(f"{where}: slice_frames {data['slice_frames']} does not follow from its other fields")
        return spec

    @classmethod
    def from_json(cls, raw: bytes, where: str = "feature spec") -> FeatureSpec:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise ConfigError(f"{where}: not valid JSON") from None
        return cls.from_dict(data, where)

    def differences(self, other: FeatureSpec) -> list[str]:
        """``field: self's value vs other's`` for every field that differs (the derived slice
        length included)."""
        a, b = self.to_dict(), other.to_dict()
        return [f"{k} {a[k]!r} vs {b[k]!r}" for k in a if a[k] != b[k]]


SPEC = FeatureSpec()


class SpecMismatch(ConfigError):
    """Features or a model made under another feature spec than the one in use."""


def check_same(found: FeatureSpec, what: str, expected: FeatureSpec = SPEC) -> None:
    """Raise :class:`SpecMismatch` (one line, naming the differing fields) unless ``found``,
    the spec of ``what``, equals ``expected`` (the one in use)."""
    diff = found.differences(expected)
    if diff:
        raise SpecMismatch(f"{what} was made under another feature spec than the one in use "
                           f"({'; '.join(diff)}, {what} vs in use)")


def write_into_model(path: str | Path, spec: FeatureSpec = SPEC) -> None:
    """Store ``spec`` inside the ``.keras`` file ``path`` (an extra member of its zip, which
    ``keras.saving.load_model`` ignores)."""
    with zipfile.ZipFile(path, "a") as z:
        if MODEL_MEMBER not in z.namelist():
            z.writestr(MODEL_MEMBER, spec.to_json())


def read_from_model(path: str | Path) -> FeatureSpec | None:
    """The spec inside the ``.keras`` file ``path``, or None for a model saved without one."""
    try:
        with zipfile.ZipFile(path) as z:
            if MODEL_MEMBER not in z.namelist():
                return None
            raw = z.read(MODEL_MEMBER)
    except (OSError, zipfile.BadZipFile):
        return None  # not a zip: Keras' own loader says what is wrong with it
    return FeatureSpec.from_json(raw, f"the feature spec inside {Path(path).name}")
