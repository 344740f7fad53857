"""Several agents sharing streams and questions through Redis leases and MQTT shared subscriptions.

`ClusterMember` (member.py) is the one object the app wires in; `leases.py` holds the fenced stream leases,
`registry.py` the shared stream set and the live agents, `journal.py` the questions in flight (so that a
killed agent's questions are answered by a survivor), `status.py` the cluster-wide status (docs/cluster.md).
"""
