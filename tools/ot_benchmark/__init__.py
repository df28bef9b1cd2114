"""The parts of ``tools/benchmark_ot.py``: the problems and peers it solves
(:mod:`.problems`), how a case is timed and its memory measured (:mod:`.measure`), and
the block-sparse sections (:mod:`.block`, with the street-scene features of
:mod:`.streets`). The script itself holds the command line and the dense sections."""
