"""Shared fixtures: a tiny random-init model and a folder of small generated images."""

from __future__ import annotations

from pathlib import Path

import pytest
from harvest_helpers import make_images


@pytest.fixture(scope="session")
def model():
    from inception_sae import load_model

    return load_model("random", seed=0)


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory) -> Path:
    return make_images(tmp_path_factory.mktemp("images"), 12)
