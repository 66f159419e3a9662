#!/usr/bin/env bash
# Text-dependent (keyword) GE2E with MultiReader over the 10 core Speech Commands keywords.
#   bash recipes/shared_td/run.sh [stage] [stop_stage]      (run from the repository root)
# Stages: 1 prepare features | 2 train | 3 evaluate on the official same-keyword test trial list.
set -euo pipefail
stage=${1:-1}
stop_stage=${2:-3}
data=${GE2E_DATA:-../shared/data}
conf=${CONF:-recipes/shared_td/conf/multireader.yaml}
exp=$(python -c "import yaml,sys; print(yaml.safe_load(open('$conf'))['out_dir'])")

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  ge2e prepare "$data/speech_commands_v0.02_test" --out cache/kw
fi
if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  ge2e train "$conf"
fi
if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  ge2e eval --model "$exp/best.pt" --trials "$data/trials/speech_commands_v0.02_test.test.txt" --root "$data" \
    --out "$exp/eval/speech_commands_v0.02_test.test"
fi
