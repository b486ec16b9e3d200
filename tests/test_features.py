"""Decoding and the log-mel definition, on real audio made by ffmpeg in every format the
stage meets: parity with librosa, the downmix, robustness, and the slicing contract."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from deepcurator import audio, features

from tests.helpers.audio import add_cover_art, make_audio, make_multichannel

SECONDS = 6.0


def librosa_db(y: np.ndarray) -> np.ndarray:
    """The reference: librosa's melspectrogram (defaults) in dB with an absolute floor."""
    import librosa

    return librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=audio.SAMPLE_RATE),
                               ref=1.0, amin=1e-10, top_db=None)


def transcode(src: Path, dest: Path, codec: list[str]) -> Path:
    subprocess.run([audio.ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-i", str(src), *codec, str(dest)],
                   check=True, capture_output=True)
    return dest


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Short real-audio files: mono/stereo/5.1/7.1, 8 to 96 kHz, mp3 CBR and VBR with an ID3
    tag and cover art, ogg, flac, wav, m4a."""
    d = tmp_path_factory.mktemp("audio")
    wav = make_audio(d / "stereo44.wav", SECONDS)
    return {
        "wav_stereo_44k": wav,
        "mp3_cbr_44k": make_audio(d / "cbr.mp3", SECONDS),
        "mp3_vbr_id3_cover": add_cover_art(make_audio(d / "vbr.mp3", SECONDS, extra=["-q:a", "4"]),
                                           d / "vbr_cover.mp3"),
        "mp3_mono_8k": make_audio(d / "mono8.mp3", SECONDS, sr=8000, channels=1),
        "ogg_48k": make_audio(d / "a48.ogg", SECONDS, sr=48000),
        "flac_96k": make_audio(d / "a96.flac", SECONDS, sr=96000),
        "wav_mono_11k": make_audio(d / "mono11.wav", SECONDS, sr=11025, channels=1),
        "wav_5.1_48k": make_multichannel(d / "surround.wav", SECONDS, 6),
        "flac_7.1_48k": make_multichannel(d / "surround71.flac", SECONDS, 8),
        "m4a_44k": transcode(wav, d / "from_wav.m4a", ["-c:a", "aac", "-b:a", "192k"]),
    }


ALL = ["wav_stereo_44k", "mp3_cbr_44k", "mp3_vbr_id3_cover", "mp3_mono_8k", "ogg_48k", "flac_96k",
       "wav_mono_11k", "wav_5.1_48k", "flac_7.1_48k", "m4a_44k"]
# soundfile (librosa.load's reader) reads these; m4a is compared with the wav it was made from.
LIBROSA_READS = [name for name in ALL if not name.startswith("m4a")]


@pytest.mark.parametrize("name", ALL)
def test_logmel_equals_librosa_on_the_same_waveform(fixtures: dict[str, Path], name: str) -> None:
    """Within 0.01 dB in every band up to 100 dB below its frame's loudest band. Further down,
    float32 rounding (relative to the frame's energy) moves values by up to a few hundredths
    of a dB (0.03 dB seen on the 8-kHz fixture, whose bands above 4 kHz are empty)."""
    y = audio.decode(fixtures[name])
    ours, ref = features.logmel(y), librosa_db(y)
    assert ours.dtype == np.float32 and ours.shape == ref.shape == (128, 1 + y.size // 512)
    diff = np.abs(ours - ref)
    assert diff[ref >= ref.max(axis=0) - 100].max() <= 0.01
    assert diff.max() <= 0.1


@pytest.mark.parametrize("name", LIBROSA_READS)
def test_end_to_end_matches_librosa_load(fixtures: dict[str, Path], name: str) -> None:
    """Decoder, downmix and resampler included: librosa.load (its default soxr_hq path)."""
    import librosa

    y_ref, _ = librosa.load(fixtures[name], sr=audio.SAMPLE_RATE)
    ours, ref = features.file_logmel(fixtures[name]), librosa_db(y_ref)
    n = min(ours.shape[1], ref.shape[1])
    assert abs(ours.shape[1] - ref.shape[1]) <= 1
    assert np.median(np.abs(ours[:, :n] - ref[:, :n])) < 0.5


def test_end_to_end_matches_the_original_path(fixtures: dict[str, Path]) -> None:
    """The original project's loader: resampy's kaiser_fast."""
    pytest.importorskip("resampy", reason="the original path needs resampy (test extra)")
    import librosa

    y_ref, _ = librosa.load(fixtures["mp3_cbr_44k"], sr=audio.SAMPLE_RATE, res_type="kaiser_fast")
    ours, ref = features.file_logmel(fixtures["mp3_cbr_44k"]), librosa_db(y_ref)
    assert ours.shape == ref.shape
    assert np.median(np.abs(ours - ref)) < 0.5


def test_m4a_matches_the_wav_it_was_encoded_from(fixtures: dict[str, Path]) -> None:
    import librosa

    y_ref, _ = librosa.load(fixtures["wav_stereo_44k"], sr=audio.SAMPLE_RATE)
    ours, ref = features.file_logmel(fixtures["m4a_44k"]), librosa_db(y_ref)
    n = min(ours.shape[1], ref.shape[1])
    assert abs(ours.shape[1] - ref.shape[1]) <= 1
    assert np.median(np.abs(ours[:, :n] - ref[:, :n])) < 0.5


@pytest.mark.parametrize("channels", [1, 2, 3, 4, 6, 8])
def test_downmix_is_the_mean_of_all_channels(tmp_path: Path, channels: int) -> None:
    """librosa.to_mono's mean, for every channel count (at 22,050 Hz: no resampling)."""
    import librosa
    import soundfile

    path = make_multichannel(tmp_path / "x.wav", 1.0, channels, sr=audio.SAMPLE_RATE)
    data, _ = soundfile.read(path, dtype="float32", always_2d=True)
    expected = librosa.to_mono(data.T)
    y = audio.decode(path)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ALL)
def test_every_format_decodes_to_mono_22050(fixtures: dict[str, Path], name: str) -> None:
    y = audio.decode(fixtures[name])
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(y.size - SECONDS * audio.SAMPLE_RATE) <= 0.01 * SECONDS * audio.SAMPLE_RATE
    assert np.isfinite(y).all() and 0.05 < np.abs(y).max() <= 1.0
    assert audio.decoder_for(fixtures[name]) == ("mpg123" if name.startswith("mp3") else "ffmpeg")


@pytest.mark.parametrize("name", ["flac_96k", "mp3_vbr_id3_cover"])  # both decoders
def test_max_duration_stops_early(fixtures: dict[str, Path], name: str) -> None:
    assert audio.decode(fixtures[name], max_duration=2.0).size == 2 * audio.SAMPLE_RATE


def test_silence_gives_the_floor_not_minus_infinity(tmp_path: Path) -> None:
    S = features.file_logmel(make_audio(tmp_path / "silence.mp3", 3.0, silent=True))
    assert np.isfinite(S).all()
    np.testing.assert_allclose(S, -100.0, atol=1e-3)
    np.testing.assert_allclose(features.logmel(np.zeros(4096, np.float32)), -100.0, atol=1e-3)


@pytest.mark.parametrize("content", [b"", b"not audio at all\n" * 100, bytes(range(256)) * 400])
def test_garbage_is_a_decode_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.mp3"
    path.write_bytes(content)
    with pytest.raises(audio.DecodeError, match=r"cannot decode broken\.mp3"):
        audio.decode(path)


def test_a_picture_without_audio_is_a_decode_error(fixtures: dict[str, Path], tmp_path: Path) -> None:
    picture = transcode(fixtures["mp3_vbr_id3_cover"], tmp_path / "cover.png", ["-map", "0:v", "-frames:v", "1"])
    with pytest.raises(audio.DecodeError):
        audio.decode(picture)


@pytest.mark.parametrize("name", ["flac_96k", "mp3_cbr_44k"])
def test_decoding_past_the_time_limit_is_a_timeout(fixtures: dict[str, Path], name: str) -> None:
    with pytest.raises(audio.DecodeTimeoutError, match="longer than"):
        audio.decode(fixtures[name], timeout=1e-3)


def test_slices_are_consecutive_whole_30s_windows() -> None:
    S = (np.arange(128 * 2700) % 97 - 60).astype(np.float32).reshape(128, 2700)
    cut = features.slices(S)
    assert cut.shape == (2, 128, 1291)
    np.testing.assert_array_equal(cut[1], S[:, 1291:2582])
    x = features.model_input(S)
    assert x.shape == (2, 128, 1291, 1) and x.dtype == np.float32
    assert features.slices(S[:, :1290]).shape == (0, 128, 1291)


def test_a_track_under_30s_has_no_slice(fixtures: dict[str, Path]) -> None:
    S = features.file_logmel(fixtures["mp3_cbr_44k"])
    assert features.n_slices(S.shape[1]) == 0 and features.model_input(S).shape == (0, 128, 1291, 1)


@pytest.mark.parametrize("sr", [22050, 44100])
def test_mel_basis_is_librosas(sr: int) -> None:
    import librosa

    np.testing.assert_array_equal(features.mel_basis(sr), librosa.filters.mel(sr=sr, n_fft=2048))


def test_float16_storage_error_is_bounded() -> None:
    """The stored form: dB values from -100 to +40 come back within 0.031 dB."""
    S = np.linspace(-100, 40, 100_000, dtype=np.float32).reshape(100, 1000)
    assert np.abs(features.quantize(S).astype(np.float32) - S).max() <= 0.0313
