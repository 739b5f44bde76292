"""DPO for LLM preference learning: pure-torch maths (loss, preference rows) and RLlib pieces."""
