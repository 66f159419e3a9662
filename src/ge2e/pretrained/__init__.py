"""The bundled model: ``ge2e_small.pt`` (weights, self-describing) and ``ge2e_small.json`` (its calibration).

Load it with :func:`ge2e.load_model`; the calibration record is written by ``recipes/shared_ti/calibrate.py``
and documented in ``docs/model.md``.
"""
