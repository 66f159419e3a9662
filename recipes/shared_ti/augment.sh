#!/usr/bin/env bash
# Augmentation A/Bs on the bundled model's run (issue 11): every arm resumes the SAME training state of the v3 run
# (weights, Adam moments, learning-rate schedule, RNG, and its metrics.csv history: BRANCH, a copy of the run folder
# taken at step 8050, default exp/branch/v3_8050) and trains the same number of steps with the recipe of
# conf/small.yaml; only the training data differ. `control` is the v3 run continued unchanged.
# Then: python recipes/shared_ti/augment_ab.py (dev lists, paired bootstrap, docs page).
#   bash recipes/shared_ti/augment.sh ARM   (ARM: control | telephone | specaug | noise_reverb | speed; two at a time)
# The telephone and noise_reverb arms read caches holding each training file's original AND its augmented copies
# (built first; resumable); wuw2 is telephone speech already and keeps only its originals. noise_reverb and speed
# leave out DSPSpeech-20 too: its 8,800 isolated words (22 speakers) would double the cache's time on 2 cores.
set -euo pipefail
arm=$1
data=${GE2E_DATA:-../shared/data}
branch=${BRANCH:-exp/branch/v3_8050}
steps=${STEPS:-1200}
out=exp/aug_$arm
splits="[LibriSpeech.train, DSPSpeech-20.train, speechocean762.train, wuw2.train, speech_commands_v0.02_test.train]"

prepare() {  # prepare CACHE KINDS CORPUS...: in this order, each corpus's training files, with a copy of each made by
  local out=$1 kinds=$2 corpus  # KINDS when the corpus is NAME:aug, the originals only otherwise
  shift 2
  for corpus in "$@"; do
    local augment=()
    [[ $corpus == *:aug ]] && augment=(--augment "$kinds")
    corpus=${corpus%:aug}
    ge2e prepare "$data/$corpus" --split-file "$data/splits/$corpus.train.txt" --out "$out" --workers 1 \
      --no-progress "${augment[@]}"
  done
}

case $arm in
  control) set_data=() ;;
  telephone) prepare cache/tel_train telephone speechocean762:aug LibriSpeech:aug speech_commands_v0.02_test:aug \
               DSPSpeech-20:aug wuw2
             set_data=("data.sources=[{cache: cache/tel_train, splits: $splits}]") ;;
  noise_reverb) prepare cache/nr_train noise,reverb LibriSpeech:aug speechocean762:aug speech_commands_v0.02_test:aug \
                  wuw2 DSPSpeech-20
                set_data=("data.sources=[{cache: cache/nr_train, splits: $splits}]") ;;
  speed) prepare cache/sp_train speed LibriSpeech:aug speechocean762:aug speech_commands_v0.02_test:aug \
           wuw2 DSPSpeech-20
         set_data=("data.sources=[{cache: cache/sp_train, splits: $splits}]") ;;  # 0.9x, 1.1x: new pseudo-speakers
  specaug) set_data=(data.freq_mask=6 data.time_mask=20) ;;  # the masks the v2 SpecAugment run used
  *) echo "augment.sh: unknown arm $arm (control | telephone | specaug | noise_reverb | speed)" >&2; exit 2 ;;
esac
mkdir -p "$out"
# a fork of the run: its state and its history (the model card counts the compute behind the weights from it)
[ -f "$out/last.pt" ] || cp "$branch/last.pt" "$branch/metrics.csv" "$out/"  # a later call resumes where it stopped
start=$(python -c "import torch; print(torch.load('$branch/last.pt', weights_only=False, map_location='cpu')['step'])")
ge2e train recipes/shared_ti/conf/small.yaml --no-progress --set "out_dir=$out" "steps=$((start + steps))" \
  "${set_data[@]}"
