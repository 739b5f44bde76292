"""The metric names of training, evaluation, the command line and the plots, in one place.

Namespaced as W&B shows them: ``reward/*`` (what the environment measured on the iteration's
episodes), ``policy/*``, ``losses/*`` (PPO), ``dpo/*``, ``perf/*``, ``eval/*`` (held-out).
"KL per token" is one quantity everywhere: the summed KL of a batch's episodes over their total
response tokens (docs/formulation.md eq. 6).
"""

from __future__ import annotations

# The JSON-lines files of a run folder: one record per iteration, one per evaluation.
METRICS_FILE = "metrics.jsonl"
EVAL_FILE = "eval.jsonl"

# Per iteration, from the episodes the env runners sampled.
SCORE = "reward/score"  # mean score of the episodes
KL = "reward/kl"  # KL per token (eq. 6)
RESPONSE_LENGTH = "reward/response_length"  # mean response tokens
REWARD_PREFIX = "reward/"  # + a reward component's name: its mean unweighted value
KL_COEF = "policy/kl_coef"  # β the episodes were sampled under
KL_REF = "policy/kl_ref"  # = KL, under the name the spec of the policy uses
ENTROPY = "policy/entropy"

# Sums the env runners log; the driver turns them into the means above (exact over runners).
SCORE_SUM = "reward/_score_sum"
KL_SUM = "reward/_kl_sum"
TOKENS = "perf/tokens"  # response tokens sampled this iteration
EPISODES = "perf/episodes"  # episodes sampled this iteration
COMPONENT_SUM_PREFIX = "reward/_sum/"  # + component name

# Learners.
LOSSES_PREFIX = "losses/"  # PPO: actor_loss, critic_loss, entropy, approx_kl, ...
DPO_PREFIX = "dpo/"  # DPO: loss, rewards/accuracy, rewards/margin, ...
GRPO_PREFIX = "grpo/"  # the GRPO family: policy_loss, kl, clip fractions, group statistics
ROLLOUT_PREFIX = "rollout/"  # sampler-learner mismatch and rollout-correction weights
GUARD_PREFIX = "guard/"  # the guardrails' measurements and events (agents/core/guard.py)
RECORD_PREFIXES = (LOSSES_PREFIX, DPO_PREFIX, GRPO_PREFIX, ROLLOUT_PREFIX, GUARD_PREFIX)
DPO_LOSS = "dpo/loss"
DPO_ACCURACY = "dpo/rewards/accuracy"

# Time.
ITERATION_S = "perf/iteration_s"
SAMPLE_TOKENS_PER_S = "perf/sample_tokens_per_s"
LEARN_TOKENS_PER_S = "perf/learn_tokens_per_s"

# Held-out evaluation: EVAL_PREFIX + a key of rlhf_env.policy.rollout.summarize (score,
# kl_per_token, response_length, reward/<component>) or of an algorithm's extra evaluation.
EVAL_PREFIX = "eval/"
EVAL_SCORE = "eval/score"
EVAL_KL = "eval/kl_per_token"
EVAL_ACCURACY = "eval/rewards/accuracy"
