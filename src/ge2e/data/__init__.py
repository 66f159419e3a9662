"""Data: corpus readers (manifests) and splits, featurizing, the float16 feature cache and its preparation,
waveform augmentation, and the GE2E batch sampler."""

from ge2e.data.cache import CachedUtterance, FeatureCache
from ge2e.data.prepare import PrepareReport, prepare
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
