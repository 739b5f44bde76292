"""What every algorithm shares: the training config, the algorithm interface and registry, the
RLModule, env runner and learner base, the training step, column and metric names, the KL
controllers and W&B tracking. Nothing here names a particular algorithm."""
