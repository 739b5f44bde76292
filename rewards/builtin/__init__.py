"""The built-in rewards; importing this package registers them by name.

- ``vader``: lexicon sentiment of the completion (:mod:`.sentiment`);
- ``embedding_similarity``: cosine similarity to a reference text, all-MiniLM-L6-v2
  (:mod:`.embedding`);
- ``length``, ``keyword``, ``regex`` (also the format rule, with ``fullmatch=True``) and
  ``repetition_penalty``, a guard against reward hacking (:mod:`.rules`).
- ``guess_number``: the outcome of the guess-the-number game (:mod:`.games`).
- ``reward_model``: a reward model trained on preferences (:mod:`.learned`,
  :mod:`rewards.reward_model`).
- ``instruction_length``, ``instruction_content``, ``instruction_format``: verifiable
  instruction checks, read from the prompts' columns (:mod:`.instructions`).

None of them imports torch or transformers until it is first called.
"""

from rewards.builtin import (  # noqa: F401  (registers the rewards)
    embedding,
    games,
    instructions,
    learned,
    rules,
    sentiment,
)
