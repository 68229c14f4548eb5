"""The pieces of scripts/gpu-check.py: ground truth (truth), the engine and its workloads
(engine, workloads), the checks (checks_*), and the runner that keeps PASS honest (report)."""
