"""ge2e: speaker verification with the Generalized End-to-End loss (Wan et al., ICASSP 2018).

Quick start (the bundled model ships inside the package; no network)::

    import ge2e
    ge2e.verify(["enroll_1.wav", "enroll_2.wav"], "test.wav")  # VerificationResult(score, same_speaker, threshold, ...)

The public names are imported lazily (PEP 562), so ``import ge2e`` and ``ge2e --help`` do not load torch.
"""

import importlib as _importlib
import typing as _typing

__version__ = "0.1.0"

# public name -> module that defines it; the names beyond __all__ stay reachable as attributes for existing code
_EXPORTS = {
    "Inference": "ge2e.inference",
    "load_model": "ge2e.api",
    "verify": "ge2e.api",
    "identify": "ge2e.api",
    "embed_utterance": "ge2e.api",
    "embed_utterances": "ge2e.api",
    "score_pairs": "ge2e.api",
    "embed_speaker": "ge2e.api",
    "embed_files": "ge2e.api",
    "VerificationResult": "ge2e.api",
    # above api in the import layers (it needs the diarization front end), hence not in ge2e.api
    "search": "ge2e.diarization.search",
    "SpeakerEncoder": "ge2e.model",
    "GE2ELoss": "ge2e.loss",
    "TE2ELoss": "ge2e.loss",
}

# the tasks and the model: what README and docs/usage.md use (the loss and encoder classes live in their modules)
__all__ = [
    "embed_files",
    "embed_speaker",
    "embed_utterance",
    "embed_utterances",
    "identify",
    "load_model",
    "score_pairs",
    "verify",
]

if _typing.TYPE_CHECKING:
    from ge2e.api import (
        VerificationResult as VerificationResult,
    )
    from ge2e.api import (
        embed_files,
        embed_speaker,
        embed_utterance,
        embed_utterances,
        identify,
        load_model,
        score_pairs,
        verify,
    )
    from ge2e.diarization.search import search as search
    from ge2e.inference import Inference as Inference
    from ge2e.loss import GE2ELoss as GE2ELoss
    from ge2e.loss import TE2ELoss as TE2ELoss
    from ge2e.model import SpeakerEncoder as SpeakerEncoder


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ge2e' has no attribute {name!r}")
    value = getattr(_importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    # the public names only: tab completion in a notebook shows the API, not this module's own imports
    return sorted(__all__)
