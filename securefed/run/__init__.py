"""One run: the round loop both transports drive, and everything around it.

federation   THE round loop (sample -> train and aggregate -> global step -> evaluate ->
             record), transport-agnostic; ``Transport`` is what a transport provides
inprocess    the transport of ``securefed simulate``: clients are function calls
aggregation  one round's secure (securefed.secagg) or plain aggregation; torch-free
server_optimizer  the server's step on the unmasked mean (FedAvg, FedAvgM, FedAdam, FedYogi,
             FedAdagrad) and its state, committed with each round; numpy only
tuning       each arm's learning rate from one grid on a validation part of the training data
partition_view  the shards' histograms printed before round 0 (withheld under DP)
simulate     ``securefed simulate``: open or resume a run folder, run, write results
setup        data, partition, model and encoded splits, built once per run
baselines    centralized and isolated references on the same budget of local steps
folder       the run folder's layout (the only module that knows file names), hash chain,
             the adapter-vector hash
canaries     the empirical audit's canaries: planned before round 0, scored and recorded
             (canaries.json) when the run ends
records      metrics records, environment.json, results.json and ledgers.json, typed
contract     every reader's way in: a record read back, its required keys checked
energy, progress, summary   energy meter, progress bars, the closing table
evaluate     ``securefed evaluate``: a saved adapter scored on a task's test split
intervals    the Wilson interval of an accuracy (evaluate and the audit's tables)

May import: ``model``, ``privacy``, ``secagg``, ``tasks``, ``plan_inputs``, ``config``,
``config_training``, ``errors``, ``seeding``.
Exports nothing here: ``folder``, ``aggregation`` and ``federation`` stay torch-free so light
commands (the audit, the Flower protocol stages) can use them; import submodules directly.
"""
