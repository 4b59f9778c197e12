"""Refactor guard: the backend's outputs and cycle counts against the recorded digest
(tests/data/backend_digest.json, written by `bench/backend_digest.py --write`).

Cycle counts never depend on data, so they are compared exactly for every entry. Output
digests are compared for fp16, whose results depend only on the model and the compiler;
int8 calibration ranges come from the reference executor's BLAS, which differs in the last
bit between AVX2 and AVX-512 machines, so int8 output digests are checked by the bench on
a machine of the recording kind, not here."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

_BENCH = Path(__file__).resolve().parents[1] / "bench" / "backend_digest.py"
_spec = importlib.util.spec_from_file_location("backend_digest", _BENCH)
assert _spec is not None and _spec.loader is not None
backend_digest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(backend_digest)


@pytest.mark.parametrize("model", ["mnist_cnn", "mobilenet_v2", "ssd_detector"])
def test_small_models_match_digest(model):
    entries = backend_digest.digest_entries([model])
    recorded = json.loads(backend_digest.DIGEST_PATH.read_text())
    assert len(entries) == 8
    assert backend_digest.compare(entries, recorded, int8_outputs=False) == []


def test_resnet50_matches_digest():
    entries = backend_digest.digest_entries(["resnet50"], tiles=[8], modes=["fp16", "int8"])
    recorded = json.loads(backend_digest.DIGEST_PATH.read_text())
    assert backend_digest.compare(entries, recorded, int8_outputs=False) == []


def test_digest_detects_a_change():
    recorded = json.loads(backend_digest.DIGEST_PATH.read_text())
    key = "mnist_cnn/1/fp16"
    changed = {key: dict(recorded[key], cycles=recorded[key]["cycles"] + 1)}
    assert backend_digest.compare(changed, recorded, int8_outputs=False) == [
        f"{key}: cycles {recorded[key]['cycles'] + 1} != recorded {recorded[key]['cycles']}"]
