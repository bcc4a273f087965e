"""Offline evaluation of routers on recorded weak/strong model results.

- `routing_data`: load a routing CSV (prompt, weak score, strong score) into `RoutingData`.
- `routing_metrics`: the routing curve, APGR, CPT(50%)/CPT(80%), cost saved at 95% of strong
  quality, the random/length/oracle baselines, k-fold and leave-one-file-out harnesses and the
  `ROUTERS` registry.
- `cli`: the `eval` click group (`eval routing FILE...`).

Nothing is imported here, so `slmchat` can register the `eval` group without importing numpy.
"""
