#!/usr/bin/env bash
# The paper's claims at an equal CPU budget, with seeds (docs/results.md is what this produces).
#   bash recipes/compare/run.sh [stage] [stop_stage]          (run from the repository root)
# Stages:
#   1 prepare the feature caches: the five shared corpora (training and test files) and the out-of-domain
#     corpus's files, for testing only (resumable)
#   2 train and test every run that has no record in recipes/compare/results/ yet, one at a time on one core
#     (TE2E, GE2E softmax and contrast, the two ablations, then the keyword arms, seed by seed; each run resumes
#     from its last.pt). 30 minutes of CPU per text-independent run: run it in the background, e.g.
#       nohup nice bash recipes/compare/run.sh 2 2 > logs/compare.log 2>&1 &
#     and commit recipes/compare/results/ as runs finish; `python recipes/compare/run.py --list` shows what is left
#   3 write docs/results.md and its plots from the records
set -euo pipefail
stage=${1:-1}
stop_stage=${2:-3}
data=${GE2E_DATA:-../shared/data}
py=${PYTHON:-.venv/bin/python}
export OMP_NUM_THREADS=1

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  $py -m ge2e prepare "$data/LibriSpeech" "$data/DSPSpeech-20" "$data/speechocean762" "$data/wuw2" \
    "$data/speech_commands_v0.02_test" --out cache/all --workers 1
  # test files only: this corpus has no train split and no training config reads this cache
  $py -m ge2e prepare "$data/arabic_speech_commands" --out cache/ood_eval --workers 1
fi
if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  $py recipes/compare/run.py
fi
if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  $py recipes/compare/report.py
fi
