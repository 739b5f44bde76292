"""RLlib agents for rlhf-env: one subpackage per algorithm; only this package imports Ray."""
