"""The GRPO family on RLlib: critic-free, group-relative advantages (GRPO, Dr. GRPO, RLOO),
token- or sequence-level ratios (GSPO), DAPO's asymmetric clip, loss aggregation and dynamic
sampling (docs/formulation.md eqs. 28-35)."""
