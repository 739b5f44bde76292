"""PPO for LLM RLHF: pure-torch maths (GAE, losses) and the RLlib pieces built on it."""
