"""The cluster the e2e runs against: a private loopback control plane (control_plane.py, with its
self-test control_plane_selftest.py), the one of SV2_E2E_KUBECONFIG (connect.py), or a node cluster
whose pods really run (node_cluster.py, with its self-test node_selftest.py)."""
