"""MLPerf Inference Offline runs of exported models under LoadGen and ONNX Runtime.

`qsl` contains the pre-tokenized samples (the query sample library), `sut` runs LoadGen's
queries on ONNX Runtime (the system under test), `harness` configures and starts LoadGen in a
separate process, `accuracy` scores LoadGen's accuracy log, and `run` is the experiment stage
that lays the results out like an MLPerf open-division submission. The worker process imports
only `qsl`, `sut` and `harness`, which do not import torch.
"""
