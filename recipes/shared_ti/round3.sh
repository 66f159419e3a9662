#!/usr/bin/env bash
# Third round: MultiReader over the corpora (paper Sec. 2.3, Eq. 12), warm-started from the bundled model v5
# (exp/soup5.pt). Every earlier run drew each batch's 20 speakers from all training corpora pooled, so most of a
# batch's negatives came from another corpus (another channel, language or task) and were easy; a diarized
# conversation or a verification list of one corpus asks to tell apart speakers of the same corpus. Here each
# step draws one batch per corpus (alpha 1 each), so every negative is a speaker of the same corpus.
#   bash recipes/shared_ti/round3.sh      (from the repository root; one core, about 4 s a step on this machine)
# Outcome (docs/augmentation.md): its best checkpoint by periodic dev validation (step 200) scored worse than v5 on
# each of the four dev lists (recipes/shared_ti/soup_choice.py exp/soup5.pt exp/g3_multireader/best.pt), so it
# was not bundled.
set -euo pipefail
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
one() { echo "{cache: cache/all, splits: [$1]}"; }
sources="[$(one LibriSpeech.train), $(one DSPSpeech-20.train), $(one speechocean762.train), \
$(one wuw2.train), $(one speech_commands_v0.02_test.train)]"
ge2e train recipes/shared_ti/conf/small.yaml --no-progress --set out_dir=exp/g3_multireader init=exp/soup5.pt \
  optim.lr=0.00025 steps=600 "data.sources=$sources"
