#!/usr/bin/env bash
# Second soup round: three forks warm-started from the v4 soup (init: exp/soup3.pt; Adam at lr 2.5e-4 from fresh
# moments, 1,200 steps each, validation on the dev lists every 200 steps), whose data differ as augment.sh's arms:
# the control (out_dir exp/shared_ti_v4), telephone copies (the tel_train cache of augment.sh), SpecAugment. Then
# the soup of their best.pt (steps from 0: warm starts), chosen on the dev lists:
#   python recipes/shared_ti/soup.py exp/shared_ti_v4 exp/g2_{telephone,specaug} --fork-step 0 --checkpoint best \
#     --out exp/soup5.pt
#   bash recipes/shared_ti/round2.sh      (from the repository root; about 1.75 CPU-hours a fork, one core each)
set -euo pipefail
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
splits="[LibriSpeech.train, DSPSpeech-20.train, speechocean762.train, wuw2.train, speech_commands_v0.02_test.train]"
common=(init=exp/soup3.pt optim.lr=0.00025 steps=1200)
ge2e train recipes/shared_ti/conf/small.yaml --no-progress --set out_dir=exp/shared_ti_v4 "${common[@]}"
ge2e train recipes/shared_ti/conf/small.yaml --no-progress --set out_dir=exp/g2_telephone "${common[@]}" \
  "data.sources=[{cache: cache/tel_train, splits: $splits}]"
ge2e train recipes/shared_ti/conf/small.yaml --no-progress --set out_dir=exp/g2_specaug "${common[@]}" \
  data.freq_mask=6 data.time_mask=20
