"""Layer 0 of rlhf-env: offline assets, model and tokenizer loading, prompt and preference
tables, typed configs and tensor operations. Nothing here imports another layer of the project.
"""
