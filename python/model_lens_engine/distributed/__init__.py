"""Distributed training runs: every rank of a torch.distributed.run job instrumented, one view.

job.py (in the engine) starts the launcher and aggregates; rank.py is each rank's program;
collectives.py times the c10d ops; aggregate.py folds the ranks' reports into the job's view.
"""
