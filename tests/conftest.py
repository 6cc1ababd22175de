"""Shared fixtures: tiny random models and the location of the real benchmark data."""

import os
from pathlib import Path

import pytest

SHARED_DATA_VARIABLE = "BERTPRUNE_SHARED_DATA"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Return the folder with the real SQuAD and GLUE files, named by BERTPRUNE_SHARED_DATA.

    Tests that use it are skipped when the variable is unset and fail when it names a folder
    without the expected files, so a broken CI setup cannot pass silently.
    """
    value = os.environ.get(SHARED_DATA_VARIABLE)
    if not value:
        pytest.skip(f"{SHARED_DATA_VARIABLE} is not set; it names the folder with squad/ and glue/")
    root = Path(value)
    expected = [
        root / "squad" / "v1.1" / "dev-v1.1.json",
        root / "glue" / "SST-2" / "dev.tsv",
        root / "glue" / "STS-B" / "dev.tsv",
        root / "glue" / "MRPC" / "dev.tsv",
    ]
    missing = [str(path) for path in expected if not path.is_file()]
    if missing:
        pytest.fail(f"{SHARED_DATA_VARIABLE}={value} lacks the real data files: {', '.join(missing)}")
    return root
