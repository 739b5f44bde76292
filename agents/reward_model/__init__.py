"""Reward-model training: it trains a model that then serves as a reward plugin."""
