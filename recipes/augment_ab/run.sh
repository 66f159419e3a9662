#!/usr/bin/env bash
# A/B test: does prepare-time augmentation (speed pseudo-speakers + additive noise + simulated reverberation)
# lower validation EER? Two small runs with the same seed, encoder, batches and step budget:
#   A  no_aug    LibriSpeech.train originals only           (conf/no_aug.yaml)
#   B  aug       originals + speed0.9/1.1 + noise + reverb  (conf/aug.yaml)
# Validation: DSPSpeech-20.dev + speech_commands_v0.02_test.dev speakers (never trained on).
#   bash recipes/augment_ab/run.sh [stage] [stop_stage]        (from the repository root)
# Stages: 1 prepare the augmented LibriSpeech.train cache | 2 train A and B (resumable)
#         3 score the official dev trial lists with each run's final and best models
#         4 write docs/experiments/2026-12-07-augmentation-pilot.md
# Everything runs niced with one thread: the machine is shared with a higher-priority training run.
set -euo pipefail
stage=${1:-1}
stop_stage=${2:-4}
data=${GE2E_DATA:-../shared/data}
export GE2E_DATA=$data OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 TQDM_MININTERVAL=30
here=recipes/augment_ab
exp=exp/augment_ab
runs=${RUNS:-"no_aug aug"}
ge2e="nice -n 15 ${PYTHON:-python} -m ge2e"
mkdir -p "$exp"

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  # train speakers only: dev/test speakers must never be augmented into training data
  $ge2e prepare "$data/LibriSpeech" --split-file "$data/splits/LibriSpeech.train.txt" \
    --out cache/libri_aug --augment speed,noise,reverb --workers "${WORKERS:-1}" --no-progress
  # validation caches (skipped when they exist: prepare resumes)
  [ -f cache/ti/index.json ] || $ge2e prepare "$data/LibriSpeech" "$data/DSPSpeech-20" --out cache/ti
  [ -f cache/kw/index.json ] || $ge2e prepare "$data/speech_commands_v0.02_test" --out cache/kw
fi
if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  for run in $runs; do
    $ge2e train "$here/conf/$run.yaml" --no-progress > "$exp/$run.log" 2>&1
  done
fi
if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  for run in $runs; do
    nice -n 15 ${PYTHON:-python} "$here/score_dev.py" "$exp/$run"
  done
fi
if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  nice -n 15 ${PYTHON:-python} "$here/report.py" --runs $runs
fi
