#!/usr/bin/env bash
# The paper's setting on VoxCeleb1+2 (and/or full LibriSpeech): 3 x 768 LSTM, 256 projection, N=64 x M=10,
# SGD lr 0.01 with halving, on GPUs with torchrun. Corpora are not bundled: point VOX1, VOX2 (and LIBRI) at them.
#   VOX1=/data/voxceleb1/wav VOX2=/data/voxceleb2/aac NGPU=8 bash recipes/voxceleb/run.sh [stage] [stop_stage]
# VoxCeleb2 ships m4a: `ge2e prepare` decodes it with ffmpeg (install it first).
# Stages: 1 prepare | 2 train (DDP) | 3 evaluate on VoxCeleb1-O (veri_test2.txt in VoxCeleb format).
set -euo pipefail
stage=${1:-1}
stop_stage=${2:-3}
ngpu=${NGPU:-1}
conf=recipes/voxceleb/conf/paper.yaml

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  ge2e prepare "$VOX2" ${LIBRI:+"$LIBRI"} --layout auto --out cache/vox_train --workers "${WORKERS:-16}"
  ge2e prepare "$VOX1" --layout voxceleb --out cache/vox1 --workers "${WORKERS:-16}"
fi
if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  torchrun --standalone --nproc_per_node "$ngpu" -m ge2e train "$conf"
fi
if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  ge2e eval --model exp/voxceleb_paper/best.pt --trials "${VOX1_TRIALS:-$VOX1/veri_test2.txt}" --root "$VOX1" \
    --out exp/voxceleb_paper/eval/vox1-O
fi
