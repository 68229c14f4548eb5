"""Training runs (train/start, train/stop, train/diagnose): a user's script runs unchanged as
`__main__`; light patches, removed when it ends, measure progress, the loss curve and a
diagnosis. Nothing is re-exported here; import from the module that owns it:

- run.start_run(server, params) -> {"runId"} and run.find_run(server, params) -> TrainingRun:
  what the server's train/* handlers call. run.TrainingRun is one run's lifecycle (active(),
  stop(), diagnosis()); run.StopRun is what train/stop raises in the script.
- instrument.Instrumentation: every patch a run installs, through one patcher.Patcher.
- counters.Counters: what a run measured, as plain numbers.
- diagnosis.diagnose(counters, run_id, device, now): train/diagnosis, a pure function.
- progress: the epoch loop (EpochTracker), loss points (LossQueue) and the rate (RateWindow).
- histograms.histogram_message(module, run_id, step): train/histograms.
"""
