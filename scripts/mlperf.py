"""Run the dense and the pruned model under MLPerf LoadGen (Offline, ONNX Runtime) and write the submission-style results."""

from bertprune.cli import run
from bertprune.mlperf.run import run_mlperf

if __name__ == "__main__":
    run(__doc__, run_mlperf)
