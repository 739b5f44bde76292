"""Layer 3 of rlhf-env: policies that act in the environments: the KV-cached ``transformers``
sampler, the vLLM engine, and rollouts. They know the environments, never RLlib."""
