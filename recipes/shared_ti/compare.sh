#!/usr/bin/env bash
# Encoder choice for CPU training (issue 11): three encoders trained from scratch on the same data and schedule
# as the bundled model (conf/small.yaml), each for one hour of one core's wall-clock, validated on the dev lists
# every 200 steps. Then: python recipes/shared_ti/plot_runs.py exp/compare_* --out docs/img/encoder_choice.png
#   bash recipes/shared_ti/compare.sh NAME        (NAME: small | stack2 | wide_stack2; run two at once at most)
set -euo pipefail
name=$1
hours=${HOURS:-1}
case $name in
  small) model="{hidden_size: 256, proj_size: 0, num_layers: 3, frame_stack: 1}" ;;        # the current preset
  stack2) model="{hidden_size: 256, proj_size: 0, num_layers: 3, frame_stack: 2}" ;;       # half the LSTM steps
  wide_stack2) model="{hidden_size: 512, proj_size: 0, num_layers: 3, frame_stack: 2}" ;;  # larger, same steps
  *) echo "compare.sh: unknown encoder $name (small | stack2 | wide_stack2)" >&2; exit 2 ;;
esac
# timeout ends the run at its budget; checkpoints every 50 steps and metrics.csv keep everything up to then
timeout --signal=INT "$(python -c "print(int($hours * 3600))")" \
  ge2e train recipes/shared_ti/conf/small.yaml --no-progress --set "out_dir=exp/compare_$name" "init=''" \
  "model=$model" val.every=200 || [ $? -eq 124 ]
