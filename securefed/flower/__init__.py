"""securefed across machines: the same training, DP and secure aggregation over Flower 1.42.

Flower carries the messages; securefed keeps the protocol. Each secure-aggregation stage is
one message exchange between the ServerApp (``server_app``, ``server_round``) and the
ClientApps (``client_app``, ``node_round``); each ClientApp is one institution with its own
data shard, privacy ledger and records (``node``). ``wire`` is how securefed's messages ride
Flower's records; ``exchange`` collects replies under a deadline. ``certs`` and
``localhost`` set up a TLS deployment with node authentication; ``records`` files the
nodes' records next to the server's run folder for the audit. ``warm_node`` is a
long-running ClientApp process per SuperNode (``--isolation process``): the model and data
stay loaded across messages and rounds. ``supernode`` is Flower's SuperNode with its 3 s idle
poll and 0.5 s reply waits shortened; it and ``warm_node`` poll quicker for a moment after
each reply (``busy_poll``); ``object_pulls`` shortens Flower's 1 s wait before it
asks again for an object that was not there yet; ``flower_pin`` is the flwr release both
were written against.

``transport`` plugs the Flower side into securefed's one round loop
(``securefed.run.federation``), as ``securefed simulate`` plugs in function calls.

Modules here import torch only inside the calls that train or evaluate, so the
protocol-only ClientApp calls start quickly (``tests/flower/test_stage_imports.py``).

May import: flwr, ``run``, ``model`` and ``tasks`` (a node trains on its own shard; the server
builds the global adapter, and the data when it evaluates), ``secagg`` (its exported message
types and the roster), ``privacy``, ``plan_inputs`` (the round plan a node pins), ``audit``
(the records module writes the audit), ``config`` and ``config_yaml`` (a node reads its own
node config), ``errors``.
Exports nothing here: ``server_app.app`` and ``client_app.app`` are what Flower loads.
"""
