"""Speaker diarization ("who spoke when") with GE2E d-vectors and spectral clustering (Wang et al., ICASSP 2018).

>>> from ge2e.diarization import diarize, write_rttm  # doctest: +SKIP
>>> segments = diarize("meeting.wav", min_speakers=2, max_speakers=4)  # doctest: +SKIP
>>> write_rttm({"meeting": segments}, "meeting.rttm")  # doctest: +SKIP
"""

from ge2e.diarization.pipeline import DiarizationConfig, diarize, embed_speech, load_encoder
from ge2e.diarization.rttm import Segment, read_rttm, write_rttm

__all__ = ["DiarizationConfig", "Segment", "diarize", "embed_speech", "load_encoder", "read_rttm", "write_rttm"]
