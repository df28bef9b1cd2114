"""The parts of ``tools/summarize_uda.py``: reading its columns (:mod:`.columns`) and
checking that they compare (:mod:`.checks`)."""
