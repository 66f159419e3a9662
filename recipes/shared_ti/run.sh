#!/usr/bin/env bash
# Text-independent GE2E on the shared corpora: the recipe of the bundled model.
#   bash recipes/shared_ti/run.sh [stage] [stop_stage]      (run from the repository root)
# Stages: 1 prepare features (VAD + log-mel, resumable) | 2 train (resumable) | 3 evaluate on the official test
# trial lists | 4 calibrate the threshold on dev and write the model card.
set -euo pipefail
stage=${1:-1}
stop_stage=${2:-4}
data=${GE2E_DATA:-../shared/data}
conf=${CONF:-recipes/shared_ti/conf/small.yaml}
exp=$(python -c "import yaml,sys; print(yaml.safe_load(open('$conf'))['out_dir'])")

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  ge2e prepare "$data/LibriSpeech" "$data/DSPSpeech-20" "$data/speechocean762" "$data/wuw2" \
    "$data/speech_commands_v0.02_test" --out cache/all
fi
if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  ge2e train "$conf"
fi
if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  for list in LibriSpeech.test DSPSpeech-20.test speechocean762.test wuw2.test speech_commands_v0.02_test.test; do
    ge2e eval --model "$exp/best.pt" --trials "$data/trials/$list.txt" --root "$data" --out "$exp/eval/$list"
  done
fi
if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  python recipes/shared_ti/calibrate.py --model "$exp/best.pt"
  python recipes/shared_ti/model_card.py --model "$exp/best.pt"
fi
