#!/usr/bin/env bash
# The bundled model, stage by stage: text-independent GE2E on the five shared corpora.
#   bash recipes/shared_ti/run.sh [stage] [stop_stage]            (from the repository root; default: every stage)
# Every stage resumes where it stopped; training runs take one core (OMP_NUM_THREADS=1). Each round is the base
# config (conf/small.yaml) plus overlays of what the round changes (conf/fork.yaml, conf/telephone.yaml, ...).
# Stages:
#   1 prepare   feature caches: the five corpora (cache/all) and the training files' augmented copies
#   2 encoder   three encoders from scratch, one CPU-hour each, chosen on the dev lists (docs/encoder_choice.md)
#   3 base      the chosen encoder continued to step 8050 (v3), and that training state kept as the branch point
#   4 round1    augmentation arms resumed from the branch, 1,200 steps each; the soup of control, telephone and
#               SpecAugment is v4 (docs/augmentation.md)
#   5 round2    three forks of v4 (control, telephone, SpecAugment); the soup of their best checkpoints is v5
#   6 round4    a fork of v5 trained with noisy copies of every file; its soup with v5 is v6 (docs/diarization.md)
#   7 bundle    v6 into src/ge2e/pretrained: float32 and int8 ONNX forms, each calibrated on the dev lists
#   8 card      the training curve, model card (with the out-of-domain test table), quantisation table, diarization
#               settings and tables, short-utterance figures; Resemblyzer's figures when it is installed
#               (pip install 'ge2e[bench]')
#   9 round5    candidates for v7 (issue 30): a fork of v6 trained with telephone, noise and reverberated copies
#               of the training files and crops from 0.5 s (600 steps), the same run continued to step 2400 with
#               SpecAugment, and their soups with v6, scored against v6 on the generalisation benchmark
#               (recipes/generalise, docs/generalisation.md); bundled by stages 7-8 only when one wins there
#   10 round6   the continued run forked again with babble and recording-level copies added (cache/bl_train),
#               and its soup with v6: g7_babble is the v7 candidate (docs/generalisation.md)
# (Round 3, MultiReader over the corpora, was tried and rejected on the dev lists:
# docs/experiments/2026-12-07-bundled-model-rounds.md.)
set -euo pipefail
stage=${1:-1}
stop_stage=${2:-10}
data=${GE2E_DATA:-../shared/data}
conf=recipes/shared_ti/conf
here=recipes/shared_ti
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p logs
run() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }
train() { ge2e train "$conf/small.yaml" "$@" --no-progress; }

prepare() {  # prepare CACHE KINDS CORPUS...: each corpus's training files, plus a KINDS copy of each for NAME:aug
  local out=$1 kinds=$2 corpus
  shift 2
  for corpus in "$@"; do
    local augment=()
    [[ $corpus == *:aug ]] && augment=(--augment "$kinds")
    corpus=${corpus%:aug}
    [ -n "${noise_dir:-}" ] && [ ${#augment[@]} -gt 0 ] && augment+=(--noise-dir "$noise_dir")
    ge2e prepare "$data/$corpus" --split-file "$data/splits/$corpus.train.txt" --out "$out" --workers 1 \
      --no-progress "${augment[@]}"
  done
}

if run 1; then
  ge2e prepare "$data/LibriSpeech" "$data/DSPSpeech-20" "$data/speechocean762" "$data/wuw2" \
    "$data/speech_commands_v0.02_test" --out cache/all --workers 1 --no-progress
  # wuw2 is telephone speech already; noise_reverb and speed leave DSPSpeech-20's 8,800 isolated words as they are
  prepare cache/tel_train telephone speechocean762:aug LibriSpeech:aug speech_commands_v0.02_test:aug \
    DSPSpeech-20:aug wuw2
  prepare cache/nr_train noise,reverb LibriSpeech:aug speechocean762:aug speech_commands_v0.02_test:aug wuw2 DSPSpeech-20
  prepare cache/sp_train speed LibriSpeech:aug speechocean762:aug speech_commands_v0.02_test:aug wuw2 DSPSpeech-20
  prepare cache/nz_train noise LibriSpeech:aug DSPSpeech-20:aug speechocean762:aug wuw2:aug \
    speech_commands_v0.02_test:aug
  # DSPSpeech-20's 8,800 isolated words stay as they are here too: their copies would double the stage's time
  prepare cache/rb_train telephone,noise,reverb LibriSpeech:aug speechocean762:aug speech_commands_v0.02_test:aug \
    wuw2:aug DSPSpeech-20
fi

if run 2; then
  declare -A encoders=(
    [small]="{hidden_size: 256, proj_size: 0, num_layers: 3, frame_stack: 1}"
    [stack2]="{hidden_size: 256, proj_size: 0, num_layers: 3, frame_stack: 2}"
    [wide_stack2]="{hidden_size: 512, proj_size: 0, num_layers: 3, frame_stack: 2}"
  )
  for name in small stack2 wide_stack2; do
    # the same wall-clock hour each; checkpoints every 50 steps and metrics.csv keep everything up to the signal
    timeout --signal=INT 3600 ge2e train "$conf/small.yaml" --no-progress --set "out_dir=exp/compare_$name" "init=''" \
      "model=${encoders[$name]}" val.every=200 || [ $? -eq 124 ]
  done
  python $here/encoder_choice.py exp/compare_small exp/compare_stack2 exp/compare_wide_stack2
fi

if run 3; then
  if [ ! -f exp/shared_ti_v3/last.pt ]; then  # v3 is the winner (stack2, the "fast" preset), continued
    mkdir -p exp/shared_ti_v3 && cp exp/compare_stack2/{last.pt,best.pt,metrics.csv} exp/shared_ti_v3/
  fi
  train --set steps=8050
  mkdir -p exp/branch/v3_8050 && cp exp/shared_ti_v3/{last.pt,metrics.csv,config.yaml} exp/branch/v3_8050/
fi

if run 4; then
  start=$(python -c "import torch; print(torch.load('exp/branch/v3_8050/last.pt', weights_only=False)['step'])")
  for arm in control telephone specaug noise_reverb speed; do
    out=exp/aug_$arm
    overlay=()
    [ "$arm" != control ] && overlay=("$conf/$arm.yaml")
    # a fork of the run: its state and its history (the model card counts the compute behind the weights from it)
    mkdir -p "$out" && { [ -f "$out/last.pt" ] || cp exp/branch/v3_8050/{last.pt,metrics.csv} "$out/"; }
    train "${overlay[@]}" --set "out_dir=$out" "steps=$((start + 1200))"
  done
  python $here/soup.py exp/aug_control exp/aug_telephone exp/aug_specaug --out exp/soup3.pt
  python $here/augment_ab.py exp/aug_{control,telephone,specaug,noise_reverb,speed} exp/soup3.pt
fi

if run 5; then
  train "$conf/fork.yaml" --set out_dir=exp/shared_ti_v4 init=exp/soup3.pt
  train "$conf/fork.yaml" "$conf/telephone.yaml" --set out_dir=exp/g2_telephone init=exp/soup3.pt
  train "$conf/fork.yaml" "$conf/specaug.yaml" --set out_dir=exp/g2_specaug init=exp/soup3.pt
  python $here/soup.py exp/shared_ti_v4 exp/g2_{telephone,specaug} --fork-step 0 --checkpoint best --out exp/soup5.pt
  python $here/soup.py exp/shared_ti_v4 exp/g2_{telephone,specaug} --fork-step 0 --out exp/soup_g2_3.pt
  python $here/soup_choice.py exp/soup3.pt exp/{shared_ti_v4,g2_telephone,g2_specaug}/best.pt exp/soup_g2_3.pt \
    exp/soup5.pt
fi

if run 6; then
  train "$conf/fork.yaml" "$conf/noise.yaml" --set out_dir=exp/g4_noise init=exp/soup5.pt
  python $here/soup.py exp/g4_noise --fork-step 0 --checkpoint best --model exp/soup5.pt --out exp/soup6.pt
  python $here/soup_choice.py exp/soup5.pt exp/g4_noise/best.pt exp/soup6.pt
  for model in exp/soup5.pt exp/g4_noise/best.pt exp/soup6.pt; do
    python recipes/diarization/separability.py --model "$model"
  done
fi

if run 7; then
  dest=src/ge2e/pretrained/ge2e_small.pt
  python - exp/soup6.pt "$dest" <<'PY'
import sys
from ge2e.model import SpeakerEncoder
model = SpeakerEncoder.load(sys.argv[1])
meta = {k: model.meta[k] for k in ("step", "val_eer", "config", "lineage", "soup") if k in model.meta}
model.save(sys.argv[2], **meta)
PY
  python $here/calibrate.py --model "$dest"
  ge2e export --format onnx --int8 "$dest" src/ge2e/pretrained/ge2e_small.int8.onnx
  python $here/calibrate.py --model src/ge2e/pretrained/ge2e_small.int8.onnx  # int8 scores move: its own threshold
fi

if run 8; then
  # two lanes, one core each
  {
    python $here/plot_runs.py exp/g4_noise --out docs/img/training.png
    # the card's out-of-domain table: the generalisation benchmark's test side (stressed copies of the test lists)
    python recipes/generalise/stress.py --split test
    python recipes/generalise/score.py bundled --name v6.test --split test
    if python -c "import resemblyzer" 2>/dev/null; then
      python benchmarks/resemblyzer_eer.py
      python recipes/generalise/score.py resemblyzer --name resemblyzer.test --split test
    fi
    python $here/model_card.py --curve img/training.png --choice img/encoder_choice.png --generalisation v6.test \
      resemblyzer.test
    python benchmarks/quantize.py --model src/ge2e/pretrained/ge2e_small.pt --cache cache/all
  } > logs/card.log 2>&1 &
  card=$!
  {
    # the form load_model() runs where onnxruntime is installed; the settings hold for both forms
    python recipes/diarization/tune.py --model src/ge2e/pretrained/ge2e_small.int8.onnx
    python benchmarks/short_utterances.py
  } > logs/diarization.log 2>&1 &
  diarization=$!
  status=0
  wait $card || { echo "run.sh: the model card lane failed (logs/card.log)" >&2; status=1; }
  wait $diarization || { echo "run.sh: the diarization lane failed (logs/diarization.log)" >&2; status=1; }
  [ "$status" = 0 ] || exit "$status"
fi

if run 9; then
  cp src/ge2e/pretrained/ge2e_small.pt exp/v6.pt
  train "$conf/fork.yaml" "$conf/robust.yaml" --set out_dir=exp/g5_robust init=exp/v6.pt steps=600
  python $here/soup.py exp/g5_robust --fork-step 0 --checkpoint best --model exp/v6.pt --out exp/soup7.pt
  # g6_long continues g5_robust's training state (weights, Adam moments, step) to step 2400, with SpecAugment
  if [ ! -f exp/g6_long/last.pt ]; then
    mkdir -p exp/g6_long && cp exp/g5_robust/{last.pt,config.yaml,metrics.csv} exp/g6_long/
  fi
  train "$conf/fork.yaml" "$conf/robust.yaml" "$conf/specaug.yaml" --set out_dir=exp/g6_long init=exp/v6.pt \
    steps=2400 val.every=300
  python $here/cut_last.py exp/g6_long exp/g6_long.pt
  python $here/soup.py exp/g6_long --fork-step 0 --model exp/v6.pt --out exp/soup8.pt
  python recipes/generalise/stress.py --split dev
  for copy in cache/stress/dev/*/*; do  # the stressed files' features once, for every model scored below
    case $(basename "$copy") in DSPSpeech-20) layout=dspspeech ;; speech_commands*) layout=speech_commands ;;
      *) layout=generic ;; esac
    ge2e prepare "$copy" --layout $layout --corpus-name "stress_$(basename "$(dirname "$copy")")_$(basename "$copy")" \
      --out cache/stress_feats --workers 1 --no-progress
  done
  python recipes/generalise/score.py bundled --name v6
  python recipes/generalise/score.py exp/g5_robust/best.pt --name g5_robust
  python recipes/generalise/score.py exp/soup7.pt --name soup7
  python recipes/generalise/score.py exp/g6_long.pt --name g6_long
  python recipes/generalise/score.py exp/soup8.pt --name soup8
  python recipes/generalise/score.py --page v6 resemblyzer g5_robust soup7 g6_long soup8 --base v6
fi

if run 10; then
  # babble talkers: speechocean762's training speakers (the benchmark's babble comes from LibriSpeech, so the
  # model never hears the benchmark's talkers, and no evaluation speaker is heard as noise either)
  mkdir -p cache/babble_speech
  while read -r speaker; do
    for f in "$data/speechocean762/$speaker"/*.opus; do ln -sf "$(realpath "$f")" cache/babble_speech/; done
  done < "$data/splits/speechocean762.train.txt"
  noise_dir=cache/babble_speech prepare cache/bl_train babble,level LibriSpeech:aug speechocean762:aug \
    speech_commands_v0.02_test:aug wuw2:aug DSPSpeech-20
  train "$conf/fork.yaml" "$conf/robust.yaml" "$conf/babble_level.yaml" --set out_dir=exp/g7_babble \
    init=exp/g6_long.pt steps=600  # two sources: MultiReader, a batch of each per step (twice the compute a step)
  python $here/soup.py exp/g7_babble --fork-step 0 --model exp/v6.pt --out exp/soup9.pt
  python recipes/generalise/score.py exp/g7_babble/model.pt --name g7_babble
  python recipes/generalise/score.py exp/soup9.pt --name soup9
  python recipes/generalise/score.py --page v6 resemblyzer g5_robust soup7 g6_long soup8 g7_babble soup9 --base v6
fi
