"""scripts/benchmark_mlperf.py on a one-layer model: LoadGen and bare-loop repeats, medians and the page section."""

import runpy
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "benchmark_mlperf.py"
TINY = ["--layers", "1", "--hidden", "64", "--heads", "2", "--ffn", "128", "--samples", "24", "--seq-len", "48", "--no-int8"]


@pytest.fixture(scope="module")
def benchmark():
    return runpy.run_path(str(SCRIPT))


def test_benchmark_writes_medians_of_alternating_runs(benchmark, tmp_path):
    page = tmp_path / "BENCHMARKS.md"
    page.write_text("# Benchmarks\n\nText before the section.\n")
    benchmark["main"]([*TINY, "--repeats", "2", "--constraints", "0.5", "--output", str(page), "--workdir", str(tmp_path / "work")])

    text = page.read_text()
    assert text.startswith("# Benchmarks\n\nText before the section.\n")
    rows = [line for line in text.splitlines() if line.startswith("| dense") or line.startswith("| pruned-0.5")]
    assert len(rows) == 2 and all("VALID" in row for row in rows)
    assert "Each variant ran 2 times in each way" in " ".join(text.split())
    for variant in ("dense", "pruned-0.5"):
        runs = sorted((tmp_path / "work" / "loadgen" / variant).glob("run_*/performance/mlperf_log_summary.txt"))
        assert len(runs) == 2
        detail = (runs[0].parent / "mlperf_log_detail.txt").read_text()
        assert '"key": "effective_performance_issue_unique", "value": true' in detail


def test_median_of_repeats(benchmark):
    result = benchmark["VariantResult"]("dense", 1.0, False, 144, 36864, 1.0)
    result.loadgen_runs, result.loadgen_results, result.bare_runs = [5.0, 9.0, 6.0], ["VALID", "INVALID", "VALID"], [7.0, 6.5, 8.0]
    assert result.loadgen_samples_per_second == 6.0
    assert result.bare_samples_per_second == 7.0
    assert result.loadgen_result == "INVALID"


def test_repeats_must_be_positive(benchmark):
    with pytest.raises(SystemExit):
        benchmark["parse_arguments"](["--repeats", "0"])
