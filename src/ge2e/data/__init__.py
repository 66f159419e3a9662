"""Data preparation: corpus readers (manifests), the float16 feature cache, and waveform augmentation."""

from ge2e.data.cache import CachedUtterance, FeatureCache, PrepareReport, prepare
from ge2e.data.readers import Utterance, load_split, read_corpus, read_speaker_list

__all__ = [
    "CachedUtterance",
    "FeatureCache",
    "PrepareReport",
    "Utterance",
    "load_split",
    "prepare",
    "read_corpus",
    "read_speaker_list",
]
