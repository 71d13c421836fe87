"""The SSH backend: a cluster on real hosts reached with fabric (inventory, remote commands)."""
