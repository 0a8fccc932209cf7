"""The selector benchmark's large-pool mode: its pool, its overrides and its table."""

from __future__ import annotations

import numpy as np

from experiments.benchmarks import bench_selectors as bench


def test_synthetic_large_pool_is_seeded_and_shaped():
    X, text = bench.load_large_pool(None, 600, 16, seed=3)
    again, _ = bench.load_large_pool(None, 600, 16, seed=3)
    assert X.shape == (600, 16) and X.dtype == np.float32
    assert np.array_equal(X, again)
    assert "600 × 16" in text


def test_saved_features_are_used_as_the_pool(tmp_path):
    path = tmp_path / "emb.npy"
    np.save(path, np.arange(12.0).reshape(4, 3))
    X, text = bench.load_large_pool(str(path), 50000, 512)
    assert X.shape == (4, 3) and X.dtype == np.float32
    assert text == "emb.npy, 4 × 3"


def test_device_override_reaches_selectors_and_trainers():
    kmeans = bench.selector_config(bench.SELECTOR_DIR / "kmeans.yaml", "cuda")
    dual_cpu = bench.selector_config(bench.SELECTOR_DIR / "dual.yaml", "cpu")
    dual_gpu = bench.selector_config(bench.SELECTOR_DIR / "dual.yaml", "cuda:0")
    assert kmeans.device == "cuda"
    assert dual_cpu.trainer is None
    assert dual_gpu.trainer.accelerator == "gpu"


def _records(times: dict[str, float]) -> list[dict]:
    return [{"selector": name, "budget": 100, "status": "ok", "time_s": t}
            for name, t in times.items()]


def test_large_table_keeps_the_mnist_table_and_marks_the_gpu_column(tmp_path):
    output = tmp_path / "selectors.md"
    meta = {"date": "d", "machine": "m", "threads": 2, "load_before": "1", "load_after": "1",
            "command": "c", "pool": "p"}
    bench.write_table(_records({"random": 0.01}), output, "mnist command", meta)
    results = {"columns": {"CPU (s)": {"meta": meta, "records": _records({"kmeans": 12.34})}}}
    bench.write_large_table(results, output, "gpu command")
    text = output.read_text()
    assert "mnist command" in text and "| random | 100 | 0.0 |" in text
    assert "| kmeans | 100 | 12.3 | to be measured |" in text
    assert "`gpu command`" in text
    # a GPU column replaces the pending one; a new MNIST table keeps the large-pool one
    gpu = _records({"kmeans": 1.5})
    gpu[0]["peak_gpu_mb"] = 2048
    results["columns"]["H200 (s)"] = {"meta": meta, "records": gpu}
    bench.write_large_table(results, output, "gpu command")
    bench.write_table(_records({"random": 0.02}), output, "mnist again", meta)
    text = output.read_text()
    assert "| kmeans | 100 | 12.3 | 1.5 (2.0 GB) |" in text
    assert "to be measured" not in text and "mnist again" in text
    assert text.count(bench.LARGE_BEGIN) == 1 and text.count(bench.LARGE_END) == 1


def test_a_second_run_fills_the_same_column(tmp_path):
    args = type("Args", (), {"results": tmp_path / "r.json", "output": tmp_path / "s.md"})()
    meta = {"date": "d", "machine": "m", "threads": 2, "load_before": "1", "pool": "p",
            "command": "first"}
    first = [*_records({"kmeans": 3.0}),
             {"selector": "usl", "budget": 100, "status": "not run (deadline)"}]
    bench.save_large(args, "CPU (s)", meta, first)
    for done in (1, 2):  # a run saves after each of its records
        bench.save_large(args, "CPU (s)", {**meta, "command": "second"},
                         _records({"usl": 4.0, "ted": 1.0})[:done])
    text = args.output.read_text()
    assert "| kmeans | 100 | 3.0 | to be measured |" in text
    assert "| usl | 100 | 4.0 | to be measured |" in text
    assert "| ted | 100 | 1.0 | to be measured |" in text
    assert "`first` then `second`" in text and "second` then `second" not in text
