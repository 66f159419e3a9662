#!/usr/bin/env bash
# Everything that depends on the bundled model, re-run after bundle.sh made a new one (issue 11, item 8): the
# training curve, the model card (official test lists, Resemblyzer side by side), int8 vs float32 EER and speed,
# the diarization tuning and tables, the short-utterance figures. Two lanes, one core each, logs under logs/.
#   bash recipes/shared_ti/downstream.sh [run ...]     (run folders of the model's lineage; default: v5's, the
#                                                       three round2.sh forks averaged into it)
set -euo pipefail
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
if [ $# -eq 0 ]; then set -- exp/shared_ti_v4 exp/g2_telephone exp/g2_specaug; fi
runs=("$@")
mkdir -p logs
card() {
  python recipes/shared_ti/plot_runs.py "${runs[@]}" --out docs/img/training.png
  python recipes/shared_ti/model_card.py --curve img/training.png --choice img/encoder_choice.png
  python benchmarks/quantize.py --model src/ge2e/pretrained/ge2e_small.pt --cache cache/all
}
diarization() {
  # the form load_model() gives where onnxruntime is installed, so tuned.json matches what users run
  python recipes/diarization/tune.py --model src/ge2e/pretrained/ge2e_small.int8.onnx
  python benchmarks/short_utterances.py
}
card > logs/downstream_card.log 2>&1 &
first=$!
diarization > logs/downstream_diarization.log 2>&1 &
second=$!
status=0
wait $first || { echo "downstream: model card lane failed (logs/downstream_card.log)" >&2; status=1; }
wait $second || { echo "downstream: diarization lane failed (logs/downstream_diarization.log)" >&2; status=1; }
exit $status
