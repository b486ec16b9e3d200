"""Training and evaluation on small real-audio features made by the project's own code:
splits, the input pipeline, train → save → reload → evaluate, kill -9 and --resume."""

from __future__ import annotations

import fcntl
import io
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deepcurator import config as config_mod
from deepcurator import features
from deepcurator.errors import InputError
from deepcurator.store import LocalStore, Store, open_store
from deepcurator.training.splits import class_balance, make_splits

from tests.helpers.cli import cli_env, run_cli, write_config
from tests.helpers.holds import wait_until
from tests.helpers.s3 import make_s3_config
from tests.helpers.training import make_features, put_dataset

TRAIN = {"width": 0.125, "batch_size": 4, "epochs": 2, "patience": 5, "val_fraction": 0.25, "test_fraction": 0.25}


@pytest.fixture(scope="session")
def feats(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return make_features(tmp_path_factory.mktemp("train-audio"))


def with_train(cfg: config_mod.Config, tmp_path: Path, **train: object) -> config_mod.Config:
    data = cfg.to_dict(redact=False)
    data["train"].update({**TRAIN, "cache_dir": str(tmp_path / "cache"), **train})
    return config_mod.from_dict(data)


# -- splits ---------------------------------------------------------------------------------

def test_splits_are_disjoint_by_track_stratified_and_deterministic() -> None:
    labels = pd.DataFrame({"youtube_id": [f"id{i:03d}" for i in range(200)], "label": [i % 3 == 0 for i in range(200)]})
    labels["label"] = labels["label"].astype(int)
    a = make_splits(labels, 0.15, 0.15, seed=1)
    b = make_splits(labels.sample(frac=1, random_state=3), 0.15, 0.15, seed=1)  # input order does not matter
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(make_splits(labels, 0.15, 0.15, seed=2))
    assert a["youtube_id"].is_unique and set(a["youtube_id"]) == set(labels["youtube_id"])
    assert set(a["split"]) == {"train", "val", "test"}
    merged = a.merge(labels, on="youtube_id", suffixes=("", "_true"))
    assert (merged["label"] == merged["label_true"]).all()
    bal = class_balance(a)  # keyed-hash splits: about 15 % of each class (10 good, 20 not-good) each
    for split in ("test", "val"):
        assert 5 <= bal[split]["good"] <= 15 and 12 <= bal[split]["not_good"] <= 28, bal
    assert sum(v["tracks"] for v in bal.values()) == 200
    tiny = labels.iloc[:12]  # 4 good, 8 not-good: every class still in every held-out split
    small = make_splits(tiny, 0.25, 0.25, seed=1)
    for split in ("val", "test"):
        assert set(small.loc[small["split"] == split, "label"]) == {0, 1}


def test_splits_reject_bad_fractions_and_duplicate_ids() -> None:
    labels = pd.DataFrame({"youtube_id": ["a", "b", "a"], "label": [0, 1, 1]})
    with pytest.raises(InputError, match="twice"):
        make_splits(labels, 0.2, 0.2, 0)
    with pytest.raises(InputError, match="fraction"):
        make_splits(labels.iloc[:2], 0.6, 0.5, 0)


# -- metrics -------------------------------------------------------------------------------

def test_track_score_is_the_mean_of_its_slices_and_metrics_match_sklearn() -> None:
    from sklearn.metrics import average_precision_score, roc_auc_score

    from deepcurator.training.evaluation import binary_metrics, track_scores

    np.testing.assert_allclose(track_scores(np.array([0.2, 0.4, 0.9, 0.5]), np.array([0, 0, 2, 2]), 3),
                               [0.3, np.nan, 0.7])
    y = np.array([0, 0, 1, 1, 1, 0])
    p = np.array([0.1, 0.6, 0.8, 0.4, 0.95, 0.3])
    m = binary_metrics(y, p)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    assert m["pr_auc"] == pytest.approx(average_precision_score(y, p))
    assert m["confusion"] == [[2, 1], [1, 2]]
    assert sum(m["reliability"]["count"]) == 6
    assert binary_metrics(np.array([1, 1]), np.array([0.2, 0.9]))["roc_auc"] is None  # one class: no AUC


# -- pipeline -------------------------------------------------------------------------------

def test_pipeline_reads_the_servers_slices_and_random_crops(feats: dict, tmp_path: Path) -> None:
    from deepcurator.training.data import build_index, fixed_slices, make_dataset, training_slices

    store = LocalStore(tmp_path / "store")
    put_dataset(store, feats)
    tracks = pd.DataFrame([(k, lab) for k, (_, lab) in feats.items()], columns=["youtube_id", "label"])
    index = build_index(store, tracks, None)
    assert len(index) == len(feats)
    items = fixed_slices(index)
    expected = np.concatenate([features.model_input(feats[i][0]) for i in index["youtube_id"]])
    x = np.concatenate([xb.numpy() for xb, _ in make_dataset(items, 3, training=False)])
    np.testing.assert_array_equal(x, expected)  # exactly what the server feeds the model

    one = training_slices(index, epoch=1, seed=5, random_crops=True)
    again = training_slices(index, epoch=1, seed=5, random_crops=True)
    other = training_slices(index, epoch=2, seed=5, random_crops=True)
    np.testing.assert_array_equal(one.start, again.start)
    assert not np.array_equal(one.start, other.start)
    assert sorted(one.track) == sorted(items.track)  # as many windows per track as slices
    assert (one.start + features.SLICE_FRAMES <= index["n_frames"].to_numpy()[one.track]).all()
    batches = list(make_dataset(one, 4, training=True))
    assert len(batches) == len(one) // 4 and batches[0][0].shape == (4, 128, 1291, 1)


def test_features_processed_again_are_read_again(store: Store, feats: dict, tmp_path: Path) -> None:
    """The S3 download cache holds one copy per stored version: replaced features are fetched
    again (and the stale copy removed), unchanged ones are not."""
    from deepcurator.training.data import build_index, read_window

    put_dataset(store, feats)
    tracks = pd.DataFrame([(k, lab) for k, (_, lab) in feats.items()], columns=["youtube_id", "label"])
    first = build_index(store, tracks, tmp_path / "cache").set_index("youtube_id")
    tag = store.versions("features/")
    assert set(tag) == {f"features/{k}.npy" for k in feats}
    changed, (S, _) = next(iter(feats.items()))
    time.sleep(0.01)  # a new modification time for the local store's tag, whatever its clock's resolution
    buf = io.BytesIO()
    np.save(buf, (S - 10).astype(features.STORED_DTYPE))
    store.put_bytes(f"features/{changed}.npy", buf.getvalue())
    assert store.versions("features/")[f"features/{changed}.npy"] != tag[f"features/{changed}.npy"]
    second = build_index(store, tracks, tmp_path / "cache").set_index("youtube_id")
    row = second.loc[changed]
    window = read_window(row["path"], row["offset"], row["n_frames"], 0)
    np.testing.assert_array_equal(window[..., 0], (S - 10).astype(features.STORED_DTYPE)[:, :features.SLICE_FRAMES])
    unchanged = [k for k in feats if k != changed]
    assert (second.loc[unchanged, "path"] == first.loc[unchanged, "path"]).all()
    if store.local_path(f"features/{changed}.npy") is None:  # S3: a cached copy per version
        assert second.loc[changed, "path"] != first.loc[changed, "path"]
        assert not Path(first.loc[changed, "path"]).exists()
        assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(Path(p).name for p in second["path"])


def test_the_cache_loses_the_temp_files_of_a_killed_run(s3_endpoint: str, feats: dict, tmp_path: Path) -> None:
    """A run killed while copying features into the S3 download cache leaves a store temp
    file there; the next run that fetches removes it, and keeps those of live processes."""
    from deepcurator.training.data import build_index

    store = open_store(make_s3_config(s3_endpoint, tmp_path))
    put_dataset(store, feats)
    cache = tmp_path / "cache"
    cache.mkdir()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()
    host = socket.gethostname()
    stale, live = cache / f".tmp-{host}-{gone}-a1b2", cache / f".tmp-{host}-{os.getpid()}-c3d4"
    stale.write_bytes(b"half a copy")
    live.write_bytes(b"being written")
    tracks = pd.DataFrame([(k, lab) for k, (_, lab) in feats.items()], columns=["youtube_id", "label"])
    assert len(build_index(store, tracks, cache)) == len(feats)
    assert not stale.exists() and live.exists()

def test_windows_read_from_many_threads_at_once(feats: dict, tmp_path: Path) -> None:
    """tf.data and the baseline read windows from many threads; the reads must not share
    anything that breaks (np.load's header parsing did, under CPython 3.11)."""
    from concurrent.futures import ThreadPoolExecutor

    from deepcurator.training.data import build_index, fixed_slices, read_window

    store = LocalStore(tmp_path / "store")
    put_dataset(store, feats)
    tracks = pd.DataFrame([(k, lab) for k, (_, lab) in feats.items()], columns=["youtube_id", "label"])
    items = fixed_slices(build_index(store, tracks, None))
    with ThreadPoolExecutor(16) as pool:
        got = list(pool.map(lambda a: read_window(*a), list(items.windows()) * 20))
    for (path, _, _, start), x in zip(items.windows(), got, strict=False):  # got: 20 rounds, the first checked
        S = np.load(path)
        np.testing.assert_array_equal(x[..., 0], S[:, start:start + features.SLICE_FRAMES].astype(np.float32))


# -- train, save, reload, evaluate ----------------------------------------------------------

def test_global_max_head_scores_a_slice_wherever_its_pattern_is() -> None:
    from deepcurator.training.model import build_model

    model = build_model(0.125, head="global_max")
    assert model.output_shape == (None, 1)
    assert "global_max" in [layer.name for layer in model.layers]
    assert not any(layer.name.startswith("drop") and layer.name != "drop_dense" for layer in model.layers)
    with pytest.raises(ValueError, match="unknown head"):
        build_model(0.125, head="attention")


@pytest.mark.slow
def test_reloaded_model_gives_the_same_scores(feats: dict, tmp_path: Path) -> None:
    import keras

    from deepcurator.training.loop import export_model
    from deepcurator.training.model import build_model

    x = np.concatenate([features.model_input(S) for S, _ in list(feats.values())[:6]])
    y = np.array([lab for S, lab in list(feats.values())[:6] for _ in range(features.n_slices(S.shape[1]))], np.float32)
    keras.utils.set_random_seed(0)
    model = build_model(0.125)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)  # moves the weights and BatchNorm statistics
    before = model.predict(x, verbose=0)
    export_model(model, 0.125, tmp_path / "model.keras")
    after = keras.saving.load_model(tmp_path / "model.keras").predict(x, verbose=0)
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-6)
    assert np.std(before) > 0


@pytest.mark.slow
def test_train_writes_a_run_that_evaluate_reproduces(cfg: config_mod.Config, feats: dict, tmp_path: Path) -> None:
    import keras

    from deepcurator.training.data import build_index, fixed_slices
    from deepcurator.training.evaluation import predict
    from deepcurator.training.loop import train

    cfg = with_train(cfg, tmp_path)
    store = open_store(cfg)
    put_dataset(store, feats)
    result = train(cfg, store, run_id="r1")
    run_id = result.run_id
    assert store.get_bytes("runs/latest").decode().strip() == "r1"
    assert "train: run r1 finished" in result.line() and result.best_epoch in (1, 2)
    for name in ("model.keras", "metrics.json", "splits.csv", "config.yml", "MODEL_CARD.md", "state.json",
                 "feature_spec.json",
                 "roc.png", "training_curves.png", "score_histograms.png", "reliability.png", "predictions.csv"):
        assert store.exists(f"runs/r1/{name}"), name
    events = [k for k in store.list("runs/r1/tensorboard/") if "events.out.tfevents" in k]
    assert len(events) == 1
    store.get_file(events[0], tmp_path / "events")
    import tensorflow as tf

    tags = [(e.step, v.tag) for e in tf.compat.v1.train.summary_iterator(str(tmp_path / "events"))
            for v in e.summary.value]
    assert (1, "val_roc_auc") in tags and (2, "learning_rate") in tags
    state = json.loads(store.get_bytes("runs/r1/state.json"))
    assert [h["epoch"] for h in state["history"]] == [1, 2] and state["finished"]

    splits = pd.read_csv(io.BytesIO(store.get_bytes("runs/r1/splits.csv")), dtype={"youtube_id": str})
    assert splits["youtube_id"].is_unique and set(splits["youtube_id"]) == set(feats)
    metrics = json.loads(store.get_bytes("runs/r1/metrics.json"))
    assert metrics["run_id"] == run_id
    for part in (metrics["test"], metrics["val"], metrics["baseline"]["test"], metrics["baseline"]["val"]):
        for level in ("slice", "track"):
            assert {"accuracy", "roc_auc", "pr_auc", "confusion", "reliability"} <= set(part[level])
    assert metrics["test"]["track"]["n"] == (splits["split"] == "test").sum()
    assert metrics["baseline"]["test"]["track"]["roc_auc"] > 0.9  # the classes are easy for band statistics
    from deepcurator import spec

    assert spec.FeatureSpec.from_json(store.get_bytes("runs/r1/feature_spec.json")) == spec.SPEC
    store.get_file("runs/r1/model.keras", tmp_path / "served.keras")
    assert spec.read_from_model(tmp_path / "served.keras") == spec.SPEC  # the model carries its spec
    card = store.get_bytes("runs/r1/MODEL_CARD.md").decode()
    assert "sought-after on Discogs" in card and "ROC-AUC" in card
    cal = metrics["training"]["calibration"]
    assert cal["method"].startswith("Platt") and f"{cal['a']:.3f}" in card  # the served model is calibrated
    assert metrics["test_scored"]["times"] == 1 and "has been scored 1 time**" in card
    from deepcurator.training.mir_baseline import GRID

    assert metrics["strong_baseline"]["setting"] in [dict(g) for g in GRID]
    assert metrics["intervals"]["resamples"] == 2000 and metrics["aggregation"]["method"] == "mean"

    # The stored model, reloaded, gives the scores recorded in predictions.csv.
    model_path = tmp_path / "model.keras"
    store.get_file("runs/r1/model.keras", model_path)
    model = keras.saving.load_model(model_path)
    test = build_index(store, splits[splits["split"] == "test"].reset_index(drop=True), tmp_path / "cache")
    items = fixed_slices(test)
    p = predict(model, items, 4)
    track = np.bincount(items.track, weights=p) / np.bincount(items.track) * 100
    preds = pd.read_csv(io.BytesIO(store.get_bytes("runs/r1/predictions.csv")), dtype={"youtube_id": str})
    stored = preds[preds["split"] == "test"].set_index("youtube_id").loc[test["youtube_id"], "score"]
    np.testing.assert_allclose(track, stored.to_numpy(), atol=2e-3)

    # `deepcurator evaluate` on the stored run writes the same metrics.
    store.delete("runs/r1/metrics.json")
    proc = run_cli("--config", str(write_config(cfg, tmp_path / "config.yml")), "evaluate", "latest", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "test tracks" in proc.stdout
    again = json.loads(store.get_bytes("runs/r1/metrics.json"))
    for key in ("val", "test", "baseline", "strong_baseline", "intervals", "aggregation", "data", "training"):
        assert _close(again[key], metrics[key]), key
    assert again["test_scored"]["times"] == 2  # evaluate counts every scoring of the test split
    assert "CNN − strong baseline: ROC-AUC" in proc.stdout and "scored 2 time(s)" in proc.stdout


def _close(a: object, b: object) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)  # type: ignore[union-attr]  # b: the same JSON shape as a
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))  # type: ignore[arg-type]  # b: a list too
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= 1e-6
    return a == b


@pytest.mark.slow
def test_train_without_features_is_a_clear_error(tmp_path: Path) -> None:
    cfg = config_mod.from_dict({"store": {"path": str(tmp_path / "store")}})
    (tmp_path / "config.yml").write_text("")
    proc = run_cli("--config", str(write_config(cfg, tmp_path / "config.yml")), "train", cwd=tmp_path)
    assert proc.returncode == 2 and "labels.csv is not in" in proc.stderr and "Traceback" not in proc.stderr


# -- kill -9 mid-epoch, then --resume -------------------------------------------------------

@pytest.mark.slow
def test_killed_mid_epoch_then_resumed_has_one_consistent_history(feats: dict, tmp_path: Path) -> None:
    """kill -9 inside epoch 2, then ``--resume``: one history, each epoch once.

    The kill lands at a known point, the saving of epoch 2's checkpoint: as soon as the run's
    scratch folder appears, the test puts a named pipe where that checkpoint goes, with a
    one-page buffer it never reads. The trainer blocks writing it (a model is far bigger than
    a page), before the checkpoint is stored and before ``state.json`` commits the epoch."""
    cfg = with_train(config_mod.from_dict({"store": {"path": str(tmp_path / "store")}}), tmp_path,
                     batch_size=2, epochs=3, patience=10)
    store = open_store(cfg)
    put_dataset(store, feats)
    config_file = write_config(cfg, tmp_path / "config.yml")
    temp = tmp_path / "temp"  # the system temp folder of both runs: the scratch folders go there
    temp.mkdir()
    log = tmp_path / "killed-run.log"
    with log.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "deepcurator", "--config", str(config_file), "train",
                                 "--run-id", "k1"], cwd=tmp_path, env=cli_env(TMPDIR=str(temp)),
                                stdout=subprocess.DEVNULL, stderr=err)
    scratch = f"deepcurator-run-{socket.gethostname()}-{proc.pid}-*"
    fd = None
    try:
        assert wait_until(lambda: list(temp.glob(scratch)) or proc.poll() is not None, timeout=240)
        work = next(iter(temp.glob(scratch)), None)
        assert work is not None, log.read_text(errors="replace")[-3000:]
        (work / "checkpoint").mkdir(exist_ok=True)
        pipe = work / "checkpoint" / "epoch-002.keras"
        os.mkfifo(pipe)  # FileExistsError here: epochs 1 and 2 ran before the test could look
        fd = os.open(pipe, os.O_RDONLY | os.O_NONBLOCK)
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 4096)
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        assert wait_until(lambda: bool(poller.poll(0)) or proc.poll() is not None, timeout=240) \
            and proc.poll() is None, log.read_text(errors="replace")[-3000:]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        if fd is not None:
            os.close(fd)
    assert proc.returncode == -signal.SIGKILL
    state = json.loads(store.get_bytes("runs/k1/state.json"))
    assert state["epoch"] == 1 and not state["finished"]  # killed inside epoch 2, before its checkpoint
    assert not store.exists("runs/k1/checkpoint/epoch-002.keras") and not store.exists("runs/latest")
    left = list(temp.glob(f"deepcurator-run-{socket.gethostname()}-{proc.pid}-*"))
    assert len(left) == 1 and (left[0] / "checkpoint").is_dir()  # kill -9 runs no cleanup

    resumed = run_cli("--config", str(config_file), "train", "--resume", cwd=tmp_path, TMPDIR=str(temp))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming run k1 after epoch 1" in resumed.stderr  # a progress note: logged, not printed
    assert not list(temp.glob("deepcurator-*"))  # the killed run's scratch removed at the start, its own at the end
    state = json.loads(store.get_bytes("runs/k1/state.json"))
    assert [h["epoch"] for h in state["history"]] == [1, 2, 3] and state["finished"]
    lrs = [h["learning_rate"] for h in state["history"]]
    assert lrs[0] > lrs[1] > lrs[2]  # the schedule continued from the restored optimizer step
    assert store.get_bytes("runs/latest").decode().strip() == "k1"
    assert len(list(store.list("runs/k1/checkpoint/"))) <= 2  # the last and the best
    again = run_cli("--config", str(config_file), "train", "--resume", cwd=tmp_path)
    assert again.returncode == 2 and "no unfinished run" in again.stderr


def test_platt_scaling_moves_one_sided_scores_to_even_odds() -> None:
    """Scores that rank well but all sit under 0.5 (the dropout/batch-norm shift of the
    original architecture) are calibrated on validation labels, inside the model itself."""
    import keras

    from deepcurator.training import calibration
    from deepcurator.training.model import build_model

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 200)
    p = 1 / (1 + np.exp(-(-2.5 + 1.5 * y + rng.normal(0, 0.5, y.size))))  # all well under 0.5
    a, c = calibration.platt(p, y)
    calibrated = 1 / (1 + np.exp(-(a * calibration.logit(p) + c)))
    assert ((p >= 0.5) == y).mean() < 0.6 < 0.9 < ((calibrated >= 0.5) == y).mean()

    keras.utils.set_random_seed(1)
    model = build_model(0.125)
    x = rng.normal(-40, 20, (3, 128, 1291, 1)).astype(np.float32)
    before = model.predict(x, verbose=0).reshape(-1)
    calibration.fold_into_output(model, 2.0, -1.0)
    after = model.predict(x, verbose=0).reshape(-1)
    np.testing.assert_allclose(calibration.logit(after), 2.0 * calibration.logit(before) - 1.0, atol=1e-4)
