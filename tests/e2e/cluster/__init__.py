"""The cluster the e2e runs against: a private loopback control plane (control_plane.py, with its
self-test control_plane_selftest.py), or the one of SV2_E2E_KUBECONFIG (connect.py)."""
