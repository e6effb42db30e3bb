"""Shared fixtures: a seeded random model, the shared real-image sample, tiny images, a browser.

Test data is made by the ``factories`` package next to this file; test modules import from there, never from
one another.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from factories import make_images
from factories.images import SHARED_DATA

SAMPLE_DIR = SHARED_DATA / "imagenet-sample-1000"
LABELS_TSV = SHARED_DATA / "inception5h_labels.tsv"


@pytest.fixture(scope="session")
def model():
    """InceptionV1 with seeded random weights (the real weights cannot be downloaded here)."""
    from inception_sae import load_model

    torch.manual_seed(0)
    return load_model("random", seed=0)


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The 1000 real ImageNet photos in ../shared (skips the test where absent)."""
    if not SAMPLE_DIR.is_dir():
        pytest.skip(f"shared image sample not found at {SAMPLE_DIR}")
    return SAMPLE_DIR


@pytest.fixture(scope="session")
def labels_tsv() -> Path:
    if not LABELS_TSV.is_file():
        pytest.skip(f"shared labels not found at {LABELS_TSV}")
    return LABELS_TSV


@pytest.fixture
def tiny_images(tmp_path) -> Path:
    """A folder of 6 small generated JPEGs."""
    return make_images(tmp_path / "imgs", 6)


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory) -> Path:
    """12 small generated images shared by the harvest tests."""
    return make_images(tmp_path_factory.mktemp("images"), 12, suffix=".png")


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: Debian's Chromium as root in a sandbox with no network but the package registries.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


@pytest.fixture(scope="module")
def browser():
    """Playwright driving Debian's Chromium; skips with the reason when either is missing."""
    if not Path(CHROMIUM).is_file():
        pytest.skip("chromium is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install 'inception-sae[browser]')")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A page that records console errors and uncaught exceptions in ``page.errors``."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)  # lets the test evaluate JS
    pg = ctx.new_page()
    pg.errors = []
    pg.on("console", lambda m: pg.errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    yield pg
    ctx.close()
