"""Running the service in production: `deepcurator serve --production` (gunicorn with the
shipped configuration) answering /predict and /metrics across workers, the metrics and the
access log with request ids, the OpenAPI document's examples against the real answers, and
pinned models (a wrong sha256 is refused)."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from deepcurator import shipped
from deepcurator.config import from_dict
from deepcurator.demo.loopback import file_server
from deepcurator.demo.pipeline import free_port
from deepcurator.demo.server_process import stop, wait_until_healthy
from deepcurator.errors import ConfigError
from deepcurator.serving import openapi
from deepcurator.serving.app import create_app
from deepcurator.serving.scoring import Scorer, load_scorer, resolve_model

from tests.helpers.cli import cli_env, run_cli, write_config
from tests.helpers.serving import running_server


def metric(text: str, name: str, **labels: str) -> float:
    """The value of the sample ``name{labels}`` in a Prometheus text exposition (0 if absent)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        m = re.fullmatch(r"([a-zA-Z_:][\w:]*)(\{(.*)\})? (\S+)", line)
        if not m or m.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(m.group(4))
    return total


def post(url: str, path: Path, name: str | None = None, **kwargs: Any) -> requests.Response:
    with open(path, "rb") as fh:
        return requests.post(f"{url}/predict", files={"audio": (name or path.name, fh)}, timeout=120, **kwargs)


# -- metrics and the access log, in process ---------------------------------------------------


def test_metrics_move_and_requests_have_ids(tiny_scorer: Scorer, audio_set: dict[str, Path],
                                            caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(from_dict({"serve": {"access_log": "json"}}), tiny_scorer)
    logger = logging.getLogger("deepcurator.access")
    logger.addHandler(caplog.handler)
    try:
        with running_server(app) as url:
            before = requests.get(f"{url}/metrics", timeout=10)
            assert before.status_code == 200 and before.headers["Content-Type"].startswith("text/plain")
            assert metric(before.text, "deepcurator_model_info", run_id=tiny_scorer.run_id, spec_version="1",
                          n_mels="128", sample_rate="22050", aggregation="mean") == 1
            assert metric(before.text, "deepcurator_http_requests_total", route="/predict") == 0
            ok = post(url, audio_set["wav"], headers={"X-Request-ID": "batch-7.track-2"})
            bad = post(url, audio_set["short"])
            junk_id = post(url, audio_set["empty"], headers={"X-Request-ID": "no spaces or\tcontrols"})
            assert requests.get(f"{url}/nowhere", timeout=10).status_code == 404
            after = requests.get(f"{url}/metrics", timeout=10).text
    finally:
        logger.removeHandler(caplog.handler)
    assert ok.status_code == 200 and ok.headers["X-Request-ID"] == "batch-7.track-2"
    assert bad.status_code == 400 and re.fullmatch(r"[0-9a-f]{32}", bad.headers["X-Request-ID"])
    assert junk_id.headers["X-Request-ID"] != "no spaces or\tcontrols"
    assert metric(after, "deepcurator_http_requests_total", route="/predict", method="POST", status="200") == 1
    assert metric(after, "deepcurator_http_requests_total", route="/predict", status="400") == 2
    assert metric(after, "deepcurator_http_requests_total", route="unmatched", status="404") == 1
    assert metric(after, "deepcurator_slices_scored_total") == 2  # the 65-s wav: 2 slices
    assert metric(after, "deepcurator_tracks_scored_total") == 1
    assert metric(after, "deepcurator_audio_seconds_scored_total") == pytest.approx(65.0, abs=0.1)
    for stage in ("decode", "features", "inference"):
        assert metric(after, f"deepcurator_{stage}_seconds_count") == 1
        assert metric(after, f"deepcurator_{stage}_seconds_sum") > 0
    assert metric(after, "deepcurator_request_duration_seconds_count", route="/predict") == 3
    assert metric(after, "deepcurator_upload_bytes_count") == 3  # the empty one too
    assert metric(after, "deepcurator_upload_bytes_sum") == pytest.approx(
        audio_set["wav"].stat().st_size + audio_set["short"].stat().st_size, rel=0.01)
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "deepcurator.access"]
    scored = [e for e in lines if e["request_id"] == "batch-7.track-2"]
    assert len(scored) == 1
    entry = scored[0]
    assert entry["method"] == "POST" and entry["route"] == "/predict" and entry["status"] == 200
    assert entry["slices"] == 2 and entry["audio_s"] == pytest.approx(65.0, abs=0.1)
    assert entry["score"] == ok.json()["score"] and entry["duration_s"] > 0 and entry["bytes_in"] > 0
    assert {e["status"] for e in lines} >= {200, 400, 404}


def test_text_access_log_line(tiny_scorer: Scorer, caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(from_dict({}), tiny_scorer)
    logger = logging.getLogger("deepcurator.access")
    logger.addHandler(caplog.handler)
    try:
        with running_server(app) as url:
            r = requests.get(f"{url}/health", timeout=10, headers={"X-Request-ID": "abc123"})
    finally:
        logger.removeHandler(caplog.handler)
    assert r.headers["X-Request-ID"] == "abc123"
    line = next(r.getMessage() for r in caplog.records if "id=abc123" in r.getMessage())
    assert re.search(r' 127\.0\.0\.1 "GET /health" 200 0/\d+ B \d+\.\d{3} s id=abc123$', line), line


# -- the OpenAPI document: its examples are the real answers ----------------------------------


def conforms(value: Any, schema: dict[str, Any], doc: dict[str, Any]) -> list[str]:
    """Where ``value`` breaks ``schema`` (the subset of JSON Schema the document uses)."""
    if "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    kinds = {"object": dict, "array": list, "string": str, "boolean": bool, "integer": int, "number": (int, float),
             "null": type(None)}
    allowed = schema.get("type") or []
    allowed = allowed if isinstance(allowed, list) else [allowed]
    if value is None and "null" in allowed:
        return []
    kind = next((k for k in allowed if isinstance(value, kinds[k])
                 and not (k in ("number", "integer") and isinstance(value, bool))), None)
    if allowed and kind is None:
        return [f"{value!r} is not {' or '.join(allowed)}"]
    problems = []
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{value!r} not in {schema['enum']}")
    if ("minimum" in schema and value < schema["minimum"]) or ("maximum" in schema and value > schema["maximum"]):
        problems.append(f"{value!r} out of range")
    if kind == "object":
        problems += [f"missing {k}" for k in schema.get("required", []) if k not in value]
        for k, sub in schema.get("properties", {}).items():
            if k in value:
                problems += [f"{k}: {p}" for p in conforms(value[k], sub, doc)]
    if kind == "array":
        for i, item in enumerate(value):
            problems += [f"[{i}]: {p}" for p in conforms(item, schema["items"], doc)]
    return problems


def same_shape(a: Any, b: Any) -> bool:
    """Whether two JSON values have the same keys and types all the way down."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same_shape(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and all(same_shape(x, y) for x, y in zip(a, b, strict=False))
    if a is None or b is None:  # a nullable field: null in one, a value in the other
        return True
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b)
    if isinstance(a, (int, float)):
        return isinstance(b, (int, float))
    return type(a) is type(b)


def test_openapi_examples_are_the_real_answers(tiny_scorer: Scorer, audio_set: dict[str, Path],
                                               tmp_path: Path) -> None:
    cfg = from_dict({"serve": {"max_upload_mb": 15, "max_duration_s": 80}})
    with running_server(create_app(cfg, tiny_scorer)) as url:
        doc = requests.get(f"{url}/openapi.json", timeout=10).json()
        assert doc["openapi"].startswith("3.1") and doc == json.loads(json.dumps(openapi.document(cfg.serve)))
        assert 'href="openapi.json"' in requests.get(url, timeout=10).text  # linked from the page
        predict = doc["paths"]["/predict"]["post"]["responses"]

        # 200: the example and the real answer have one shape, and both fit the schema.
        example = predict["200"]["content"]["application/json"]["examples"]["three_slices"]["value"]
        real = post(url, audio_set["wav"]).json()
        schema = predict["200"]["content"]["application/json"]["schema"]
        assert conforms(example, schema, doc) == [] and conforms(real, schema, doc) == []
        assert same_shape(example, real)
        text = post(url, audio_set["wav"], params={"format": "text"}).text
        assert re.fullmatch(r"\d+\.\d\d\n", text)
        assert re.fullmatch(r"\d+\.\d\d\n", predict["200"]["content"]["text/plain"]["examples"]["score"]["value"])

        # Errors: each documented example is what the documented request gets, word for word.
        big = tmp_path / "big.wav"
        big.write_bytes(audio_set["wav"].read_bytes() * 2)  # 23 MB > 15 MB
        requests_for = {
            "no_file": lambda: requests.post(f"{url}/predict", files={"other": ("x.txt", b"hi")}, timeout=60),
            "empty": lambda: post(url, audio_set["empty"]),
            "not_audio": lambda: post(url, audio_set["text"], name="track.mp3"),
            "too_short": lambda: post(url, audio_set["short"]),
            "too_large": lambda: post(url, big),
            "too_long": lambda: post(url, audio_set["mp3"]),  # 95 s > 80 s
        }
        seen = set()
        for status in ("400", "413"):
            content = predict[status]["content"]["application/json"]
            for name, ex in content["examples"].items():
                r = requests_for[name]()
                seen.add(name)
                assert r.status_code == int(status), (name, r.text)
                assert conforms(r.json(), content["schema"], doc) == []
                got, want = r.json(), ex["value"]
                if name == "not_audio":  # the upload's temp name differs each time
                    tmp_name = r"deepcurator-upload-\w+\.upload"
                    got = {**got, "error": re.sub(tmp_name, "T", got["error"])}
                    want = {**want, "error": re.sub(tmp_name, "T", want["error"])}
                assert got == want, name
        assert seen == set(requests_for)

        health = doc["paths"]["/health"]["get"]["responses"]["200"]["content"]["application/json"]
        real_health = requests.get(f"{url}/health", timeout=10).json()
        assert conforms(real_health, health["schema"], doc) == []
        assert conforms(health["examples"]["up"]["value"], health["schema"], doc) == []
        assert set(health["examples"]["up"]["value"]) <= set(real_health)

        # /metrics: every series of the example exists in the real exposition.
        metrics_example = doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]["text/plain"]
        real_metrics = requests.get(f"{url}/metrics", timeout=10).text
        names = {line.split("{")[0].split(" ")[0] for line in metrics_example["examples"]["some"]["value"].splitlines()
                 if line and not line.startswith("#")}
        assert names and all(re.search(rf"^{n}[{{ ]", real_metrics, re.M) for n in names), names


# -- pinned models --------------------------------------------------------------------------


@pytest.fixture
def model_server(tiny_model: Path) -> Iterator[str]:
    """The folder of ``tiny_model`` over HTTP on loopback."""
    with file_server(tiny_model.parent) as server:
        yield server.url


def test_pinned_url_model(model_server: str, tiny_model: Path, tmp_path: Path) -> None:
    good = shipped.file_sha256(tiny_model, digits=64)
    wrong = "0" * 64
    cfg = from_dict({"serve": {"model_cache_dir": str(tmp_path / "cache")}})
    src = resolve_model(cfg, f"{model_server}/model.keras#sha256={good}")
    assert src.path.read_bytes() == tiny_model.read_bytes() and src.run_id == "model"
    with pytest.raises(ConfigError) as err:
        resolve_model(cfg, f"{model_server}/model.keras#sha256={wrong}")
    message = str(err.value)
    assert "\n" not in message and good in message and wrong in message and "refusing" in message
    assert src.path.read_bytes() == tiny_model.read_bytes()  # the good copy is kept, nothing half-written left
    assert sorted(p.name for p in src.path.parent.iterdir()) == [src.path.name]
    with pytest.raises(ConfigError, match="64 hexadecimal"):
        resolve_model(cfg, f"{model_server}/model.keras#sha256=abc")
    cfg.serve.model_sha256 = wrong
    with pytest.raises(ConfigError, match="disagree"):
        resolve_model(cfg, f"{model_server}/model.keras#sha256={good}")

    # The cached copy is checked on every start: a damaged one is fetched again.
    cfg.serve.model_sha256 = good
    src.path.write_bytes(b"damaged")
    assert resolve_model(cfg, f"{model_server}/model.keras").path.read_bytes() == tiny_model.read_bytes()


def test_pinned_local_model_is_checked_on_start(tiny_model: Path, tmp_path: Path) -> None:
    cfg = from_dict({"serve": {"model": str(tiny_model), "model_sha256": "ab" * 32}})
    with pytest.raises(ConfigError, match="not the pinned abab"):
        load_scorer(cfg)


@pytest.mark.slow
def test_serve_refuses_a_model_with_a_wrong_hash(model_server: str, tmp_path: Path) -> None:
    cfg = from_dict({"store": {"path": str(tmp_path / "store")},
                     "serve": {"model": f"{model_server}/model.keras", "model_sha256": "1" * 64,
                               "model_cache_dir": str(tmp_path / "cache")}})
    config = write_config(cfg, tmp_path / "config.yml")
    for extra in ([], ["--production"]):
        proc = run_cli("--config", str(config), "serve", "--port", str(free_port()), *extra, cwd=tmp_path,
                       timeout=120)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()  # pooch's note on the download, then the refusal
        assert "Traceback" not in proc.stderr and lines[-1].startswith("deepcurator serve: error: "), proc.stderr
        assert "not the pinned 1111" in lines[-1] and "refusing" in lines[-1]
    assert not list((tmp_path / "cache").glob("*.keras"))


# -- production: gunicorn the documented way --------------------------------------------------


@pytest.mark.slow
def test_serve_production_answers_predict_and_metrics(tiny_model: Path, audio_set: dict[str, Path],
                                                      tmp_path: Path) -> None:
    """`deepcurator serve --production` runs gunicorn with the shipped configuration: two
    workers, and /metrics counts the requests of both, whichever answers."""
    port = free_port()
    cfg = from_dict({"store": {"path": str(tmp_path / "store")}, "serve": {"model": str(tiny_model)}})
    config = write_config(cfg, tmp_path / "config.yml")
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 - closed below, once the server stops
    proc = subprocess.Popen([sys.executable, "-m", "deepcurator", "--config", str(config), "serve", "--production",
                             "--port", str(port)], cwd=tmp_path, env=cli_env(TMPDIR=str(tmp_path)), stderr=log,
                            stdout=log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, proc)
        metrics_dirs = list(tmp_path.glob("deepcurator-metrics-*"))
        assert len(metrics_dirs) == 1
        for _ in range(4):
            assert requests.get(f"{url}/metrics", timeout=10).status_code == 200
        answers = [post(url, audio_set["wav"], headers={"X-Request-ID": f"req-{i}"}) for i in range(4)]
        assert [a.status_code for a in answers] == [200] * 4
        assert [a.headers["X-Request-ID"] for a in answers] == [f"req-{i}" for i in range(4)]
        assert post(url, audio_set["short"]).status_code == 400
        for _ in range(4):  # any worker's answer adds up every worker's counts
            text = requests.get(f"{url}/metrics", timeout=10).text
            assert metric(text, "deepcurator_http_requests_total", route="/predict", status="200") == 4
            assert metric(text, "deepcurator_http_requests_total", route="/predict", status="400") == 1
            assert metric(text, "deepcurator_slices_scored_total") == 8
            assert metric(text, "deepcurator_inference_seconds_count") == 4
            assert metric(text, "deepcurator_model_info", run_id=tiny_model.parent.name) == 1
        pids = {p.name.split("_")[-1] for p in metrics_dirs[0].iterdir()}
        assert len(pids) >= 2  # both workers wrote metrics
    finally:
        stop(proc)
        log.close()
    output = (tmp_path / "server.log").read_text()
    assert proc.returncode == 0, output
    assert "Booting worker" in output and "TensorFlow threads each" in output
    assert re.search(r'"POST /predict" 200 \d+/\d+ B [\d.]+ s id=req-0 score=', output)
    assert not list(tmp_path.glob("deepcurator-metrics-*"))  # removed on shutdown
