"""The training driver: the loop over RLlib iterations (:mod:`.loop`), checkpoints and export
(:mod:`.checkpoints`), RLlib results as our metrics (:mod:`.results`), held-out evaluation
(:mod:`.evaluation`) and plots (:mod:`.plot`). It runs any registered algorithm through the
interface of :mod:`agents.core.algorithm` and never names one."""
