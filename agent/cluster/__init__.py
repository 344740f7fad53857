"""Several agents sharing streams and questions through Redis: fenced stream leases, question claims.

`ClusterMember` (member.py) is the one object the app wires in; `leases.py` holds the fenced stream leases,
`registry.py` the shared stream set and the live agents, `journal.py` the question claims (one agent takes
each question; a survivor re-takes a killed taker's), `status.py` the cluster-wide status (docs/cluster.md).
"""
