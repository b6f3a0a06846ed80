"""benchmarks/gpu_check.py, the prepared GPU check: its --cpu-smoke path runs end to end (reduced) in CI."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
gc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gc)


def test_device_names_become_file_tags():
    assert gc.device_tag("NVIDIA H100 80GB HBM3") == "nvidia_h100"
    assert gc.device_tag("NVIDIA H200") == "nvidia_h200"
    assert gc.device_tag("NVIDIA GeForce RTX 4090") == "nvidia_geforce_rtx_4090"
    with pytest.raises(ValueError, match="name"):
        gc.device_tag("  ")


def test_smoke_shapes_are_small_multiples_of_8():
    assert gc.smoke_shape((160, 192, 160)) == (32, 40, 32)
    assert gc.smoke_shape((40, 48, 40)) == (16, 16, 16)


@pytest.mark.parametrize("argv, message", [
    (["--cpu-smoke", "--budget", "0"], "--budget must be a positive number"),
    (["--cpu-smoke", "--vm-steps", "-3"], "--vm-steps must be a positive integer"),
    (["--cpu-smoke", "--stages", "nope"], "--stages"),
    (["--cpu-smoke", "--device", "tpu"], "--device must be"),
])
def test_bad_arguments_are_named(argv, message, capsys):
    with pytest.raises(SystemExit):
        gc.parse_args(argv)
    assert message in capsys.readouterr().err


def test_cpu_smoke_runs_every_stage_and_writes_the_report(tmp_path):
    # the smoke path, reduced further (4 training steps, 1 held-out pair, 1 timed iteration): ~20 s
    argv = ["--cpu-smoke", "--vm-steps", "4", "--n-eval", "1", "--speed-steps", "1",
            "--out-dir", str(tmp_path), "--work-dir", str(tmp_path)]
    assert gc.main(argv) == 0
    blob = json.loads((tmp_path / "gpu_cpu_smoke.json").read_text())
    assert {k: v["status"] for k, v in blob["stages"].items()} == {s: "ok" for s in gc.STAGES}
    assert [r["lesson"] for r in blob["memory"]] == ["04", "05", "06", "07", "08", "08", "09", "10", "11", "11"]
    assert all("error" not in r for r in blob["memory"] + blob["speed"])
    assert blob["speed"] and blob["lesson08"]["points"][-1]["step"] == 4
    text = (tmp_path / "gpu_cpu_smoke.md").read_text()
    for part in ("CPU smoke test", "## 1. Memory", "## 2. VoxelMorph speed", "## 3. Lesson 08", "torch "):
        assert part in text
