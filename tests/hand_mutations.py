"""The method mutations of issue 14, each applied to a private copy of the tree, with the tests that catch it.

    .venv/bin/python tests/hand_mutations.py [NAME-SUBSTRING ...]

For every mutation this copies src/ and tests/ to a temporary folder (the working tree is never touched, so
it is safe beside other people's uncommitted edits), applies the one text replacement, runs the fast test
files there with that copy first on PYTHONPATH, and prints the failing tests. A mutation that no test
fails is reported as SURVIVED and the exit status is 1. docs/testing.md holds the table this prints.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTS = [
    "tests/test_sampler_contract.py",
    "tests/test_train_smoke.py",
    "tests/test_audio.py",
    "tests/test_properties.py",
    "tests/test_loss.py",
    "tests/test_recipe.py",
]
DRAW = "int(rng.integers(self.cfg.min_frames, self.cfg.max_frames + 1))"
# (name, file, original text, mutated text): each original must occur in the file
MUTATIONS = [
    ("crop length fixed at 140", "src/ge2e/data/sampler.py", f"length = {DRAW}", "length = 140"),
    (
        "crop length drawn per source, not per batch",
        "src/ge2e/data/sampler.py",
        "self._batch(pool, length, rng)",
        f"self._batch(pool, {DRAW}, rng)",
    ),
    (
        "speakers drawn with replacement",
        "src/ge2e/data/sampler.py",
        "rng.choice(len(pool), size=n, replace=False)",
        "rng.choice(len(pool), size=n, replace=True)",
    ),
    ("learning-rate factor 0.1 instead of 0.5", "src/ge2e/train.py", "gamma=0.5)", "gamma=0.1)"),
    (
        "gradient clipping removed",
        "src/ge2e/train.py",
        "clip_grad_norm_(params, cfg.optim.grad_clip)",
        "clip_grad_norm_(params, float('inf'))",
    ),
    (
        "MultiReader weights alpha ignored",
        "src/ge2e/train.py",
        "total = sum(w * loss for w, loss in zip(self.weights, losses, strict=True))",
        "total = sum(losses)",
    ),
    (
        "validation negatives drawn from the same speaker",
        "src/ge2e/train.py",
        "rng.choice(pool.groups[s1]), rng.choice(pool.groups[s2])",
        "rng.choice(pool.groups[s1]), rng.choice(pool.groups[s1])",
    ),
    (
        "validation negative speakers drawn with replacement",
        "src/ge2e/train.py",
        "s1, s2 = rng.choice(len(pool), size=2, replace=False)",
        "s1, s2 = rng.choice(len(pool), size=2, replace=True)",
    ),
    (
        "rectangular analysis window",
        "src/ge2e/audio.py",
        "torch.hann_window(win_length, periodic=True, dtype=torch.float32, device=device)",
        "torch.ones(win_length, dtype=torch.float32, device=device)",
    ),
    ("wrong mel scale: Hz -> mel with 1000 Hz for 700 Hz", "src/ge2e/audio.py", "/ 700.0)", "/ 1000.0)"),
    ("wrong mel scale: 1000 Hz for 700 Hz both ways", "src/ge2e/audio.py", "700.0", "1000.0"),
    (
        "short utterances padded on the right",
        "src/ge2e/data/sampler.py",
        "np.concatenate([pad, frames])",
        "np.concatenate([frames, pad])",
    ),
    ("min_utterances off by one", "src/ge2e/data/sampler.py", "len(v) >= min_utterances", "len(v) > min_utterances"),
    (
        "loss left to bf16 under autocast",
        "src/ge2e/loss.py",
        "torch.autocast(tensor.device.type, enabled=False)",
        "torch.autocast(tensor.device.type, enabled=torch.is_autocast_enabled(tensor.device.type))",
    ),
]


def run(name: str, path: str, old: str, new: str) -> list[str] | None:
    """Failing test ids with the mutation applied; None when the original text is not in the file."""
    with tempfile.TemporaryDirectory(prefix="ge2e-mutation-") as tmp:
        copy = Path(tmp)
        shutil.copytree(REPO / "src", copy / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        shutil.copytree(REPO / "tests", copy / "tests", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(REPO / "pyproject.toml", copy)
        text = (copy / path).read_text()
        if old not in text:
            return None
        (copy / path).write_text(text.replace(old, new))
        env = {**os.environ, "PYTHONPATH": str(copy / "src"), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        env.pop("CI", None)  # the copy has no shared/ data beside it: those tests skip
        tests = [t for t in TESTS if (copy / t).exists()]
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", *tests]
        out = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True).stdout
        return sorted({re.sub(r"\[.*\]$", "", t) for t in re.findall(r"^FAILED (\S+)", out, re.M)})


def main(selected: list[str]) -> int:
    survived = 0
    for name, path, old, new in MUTATIONS:
        if selected and not any(s in name for s in selected):
            continue
        failed = run(name, path, old, new)
        if failed is None:
            print(f"{name}: NOT APPLIED ({path} no longer contains {old!r})")
            survived += 1
        elif not failed:
            print(f"{name}: SURVIVED")
            survived += 1
        else:
            print(f"{name}: " + ", ".join(t.removeprefix("tests/") for t in failed))
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
