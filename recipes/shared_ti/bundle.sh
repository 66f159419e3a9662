#!/usr/bin/env bash
# Make a training run's best checkpoint (by dev EER) the bundled model, export it as int8 ONNX (what load_model()
# runs where onnxruntime is installed) and calibrate each form's threshold on the dev lists.
#   bash recipes/shared_ti/bundle.sh [checkpoint]      (run from the repository root; default: the v3 run's best.pt,
#                                                       a candidate cut from last.pt by cut_last.py, or a soup.py average)
# The model card (model_card.py) and the diarization tables are regenerated separately: they take longer.
set -euo pipefail
ckpt=${1:-exp/shared_ti_v3/best.pt}
dest=src/ge2e/pretrained/ge2e_small.pt
python - "$ckpt" "$dest" <<'PY'
import sys
from ge2e.model import SpeakerEncoder
model = SpeakerEncoder.load(sys.argv[1])
meta = {k: model.meta[k] for k in ("step", "val_eer", "config", "lineage", "soup") if k in model.meta}
model.save(sys.argv[2], **meta)
print(f"{sys.argv[2]}: step {meta.get('step')}, dev EER {100 * meta.get('val_eer', float('nan')):.2f}%")
PY
python recipes/shared_ti/calibrate.py --model "$dest"
int8=src/ge2e/pretrained/ge2e_small.int8.onnx
ge2e export --format onnx --int8 "$dest" "$int8"
python recipes/shared_ti/calibrate.py --model "$int8"   # int8 scores move a little: its own threshold
