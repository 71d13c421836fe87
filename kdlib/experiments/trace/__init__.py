"""Figures 12–13: replay the Azure Functions trace against a cluster.

``data`` reads the trace, ``schedule`` turns it into timed invocations, ``kpa`` decides
replica counts, ``gateway`` hands invocations to Ready pods, ``replay`` drives a real
cluster, ``logs`` writes and parses the per-invocation log, ``reference`` reads the
original's reference CSVs (Kn/K8s, Dirigent), ``analysis`` and ``plots`` make the figures. Nothing runs at import time.
"""
