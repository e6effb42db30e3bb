"""The checkpoint pair (tensors file + JSON pointer) survives a kill at any instant; the clock's rules."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest
import torch
from factories.cli import process_env

from inception_sae import checkpoint
from inception_sae.errors import UserError

POINTER, STALE = "state.json", "tensors-*.safetensors*"


class Killed(BaseException):
    """Stands in for a kill: raised in place of one file-system operation of a save."""


def save_step(folder, step: int) -> None:
    """A checkpoint whose tensors say which step they belong to (a mismatched pair is then visible)."""
    tensors = {"w": torch.full((3, 4), float(step)), "rng": torch.arange(step + 1)}
    checkpoint.save(folder, f"tensors-{step:09d}.safetensors", tensors, {"step": step}, pointer=POINTER, stale=STALE)


def assert_matching_pair(folder, steps: tuple[int, ...]) -> int:
    """The folder's checkpoint is complete, of one of ``steps``, and its tensors are that step's."""
    loaded = checkpoint.load(folder, POINTER)
    assert loaded is not None
    tensors, state = loaded
    step = state["step"]
    assert step in steps
    assert tensors["w"].numel() >= 12 and bool((tensors["w"] == step).all())
    assert torch.equal(tensors["rng"], torch.arange(step + 1))
    return step


def test_a_save_leaves_one_pointer_naming_its_file_and_removes_older_ones(tmp_path):
    (tmp_path / "tensors-000000001.safetensors.123.tmp").write_bytes(b"left by a killed writer")
    for step in (1, 2, 3):
        save_step(tmp_path, step)
        assert sorted(p.name for p in tmp_path.iterdir()) == [POINTER, f"tensors-{step:09d}.safetensors"]
        assert assert_matching_pair(tmp_path, (step,)) == step


# the renames all come before the pointer is in place, the removals all after it, the syncs on both sides
@pytest.mark.parametrize(("op", "outcomes"), [("replace", {"old"}), ("fsync", {"old", "new"}), ("unlink", {"new"})])
def test_a_kill_before_any_file_operation_leaves_the_old_or_the_new_pair(tmp_path, monkeypatch, op, outcomes):
    """Interrupt the 1st, 2nd, ... operation of kind ``op`` of a save until one completes: every prefix of
    the save leaves a complete pair (the old one or the new one), and the next save cleans up."""
    save_step(tmp_path, 1)
    targets = {"replace": (os, "replace"), "fsync": (os, "fsync"), "unlink": (pathlib.Path, "unlink")}
    owner, name = targets[op]
    real = getattr(owner, name)
    seen = {"old": 0, "new": 0}
    for k in range(1, 50):
        calls = [0]

        def killing(*a, _k=k, calls=calls, **kw):
            calls[0] += 1
            if calls[0] == _k:
                raise Killed
            return real(*a, **kw)

        monkeypatch.setattr(owner, name, killing)
        try:
            save_step(tmp_path, 2)
        except Killed:
            monkeypatch.setattr(owner, name, real)
            step = assert_matching_pair(tmp_path, (1, 2))
            seen["old" if step == 1 else "new"] += 1
            save_step(tmp_path, 1)  # back to the old pair: the next kill starts from it
            assert sorted(p.name for p in tmp_path.iterdir()) == [POINTER, "tensors-000000001.safetensors"]
            continue
        finally:
            monkeypatch.setattr(owner, name, real)
        assert_matching_pair(tmp_path, (2,))
        break
    else:
        pytest.fail("the save never completed")
    assert {k for k, n in seen.items() if n} == outcomes, seen


CHILD = """
import sys, torch
from inception_sae import checkpoint
step = 0
while True:
    step += 1
    t = {"w": torch.full((256, 256), float(step)), "rng": torch.arange(step + 1)}
    checkpoint.save(sys.argv[1], f"tensors-{step:09d}.safetensors", t, {"step": step}, pointer="state.json",
                    stale="tensors-*.safetensors*")
"""


def test_sigkill_while_saving_in_a_loop_leaves_a_matching_pair(tmp_path):
    """A process that does nothing but save, killed at arbitrary moments: the pair always matches."""
    for i, delay in enumerate((0.0, 0.013, 0.037)):
        folder = tmp_path / str(i)
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(folder)], env=process_env())
        deadline = time.time() + 60
        while not (folder / POINTER).is_file() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.005)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        step = assert_matching_pair(folder, tuple(range(1, 100_000)))
        tensor_files = sorted(p.name for p in folder.glob("tensors-*.safetensors"))
        assert f"tensors-{step:09d}.safetensors" in tensor_files and len(tensor_files) <= 2, tensor_files
        save_step(folder, step + 1)  # a resumed run's next save removes what the kill left
        assert sorted(p.name for p in folder.iterdir()) == [POINTER, f"tensors-{step + 1:09d}.safetensors"]


def test_no_checkpoint_is_none_and_a_corrupt_one_is_a_one_line_error(tmp_path):
    assert checkpoint.load(tmp_path, POINTER) is None
    assert not checkpoint.exists(tmp_path, POINTER)
    save_step(tmp_path, 4)
    assert checkpoint.exists(tmp_path, POINTER)
    file = tmp_path / "tensors-000000004.safetensors"
    file.write_bytes(file.read_bytes()[:50])  # cut short
    for call in (lambda: checkpoint.load(tmp_path, POINTER), lambda: checkpoint.read_tensors(file)):
        with pytest.raises(UserError, match="cannot read checkpoint") as e:
            call()
        assert "\n" not in str(e.value) and "start over" in str(e.value)
    assert checkpoint.read_tensors(file, broken_ok=True) is None
    assert checkpoint.read_tensors(tmp_path / "absent.safetensors") is None
    file.unlink()
    with pytest.raises(UserError, match="names no tensors file that exists"):
        checkpoint.load(tmp_path, POINTER)
    (tmp_path / POINTER).write_text('{"step": 4, "tens')
    with pytest.raises(UserError, match="not valid JSON"):
        checkpoint.load(tmp_path, POINTER)
    (tmp_path / POINTER).write_text("[1, 2]")
    with pytest.raises(UserError, match="not a JSON object"):
        checkpoint.read_pointer(tmp_path, POINTER)


def test_a_pointer_without_a_tensors_entry_names_the_default_file(tmp_path):
    checkpoint.save_tensors(tmp_path / "state.safetensors", {"x": torch.ones(2)})
    (tmp_path / "cursor.json").write_text('{"pass": 2}')
    tensors, state = checkpoint.load(tmp_path, "cursor.json", default_tensors="state.safetensors") or ({}, {})
    assert state == {"pass": 2} and torch.equal(tensors["x"], torch.ones(2))


class FakeTime:
    """``time.monotonic`` under the test's control."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake_time(monkeypatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(checkpoint.time, "monotonic", fake)
    return fake


def due_steps(fake: FakeTime, every_steps: int, every_s: float, steps: int, step_s: float, **kw) -> list[int]:
    """The steps (1..``steps``, each taking ``step_s`` seconds, of a 100-step run) after which a clock says save."""
    clock = checkpoint.Clock(every_steps, every_s, **kw)
    due = []
    for step in range(1, steps + 1):
        fake.now += step_s
        if clock.due(step, 100):
            due.append(step)
    return due


def test_clock_steps_rule(fake_time):
    clock = checkpoint.Clock(every_steps=3)
    assert [s for s in range(1, 11) if clock.due(s, 10)] == [3, 6, 9]
    assert [s for s in range(1, 13) if clock.due(s, 12)] == [3, 6, 9]  # not at the end: saved anyway
    assert due_steps(fake_time, 0, 0.0, 99, 60.0) == []  # both rules off


def test_clock_seconds_rule_counts_from_the_last_save(fake_time):
    clock = checkpoint.Clock(every_s=10.0)
    due = []
    for t in range(1, 35):  # one call per second, without steps (analysis, featvis)
        fake_time.now += 1.0
        if clock.due():
            due.append(t)
    assert due == [10, 20, 30]
    assert due_steps(fake_time, 0, 10.0, 14, 3.0) == [4, 8, 12]  # 12 s after each save
    assert due_steps(fake_time, 4, 10.0, 14, 3.0) == [4, 8, 12]  # the step rule comes first every time
    # 9 s after each save, whichever rule made it, and the step multiples
    assert due_steps(fake_time, 4, 7.0, 12, 3.0) == [3, 4, 7, 8, 11, 12]


def test_distributed_clock_uses_steps_only(fake_time):
    assert due_steps(fake_time, 5, 1.0, 11, 100.0) == list(range(1, 12))
    assert due_steps(fake_time, 5, 1.0, 11, 100.0, distributed=True) == [5, 10]
