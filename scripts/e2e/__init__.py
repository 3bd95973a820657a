"""End-to-end harness: the real Pulumi CLI against a real kube-apiserver on loopback (make e2e)."""
