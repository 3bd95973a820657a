"""The e2e's container images, built here without any image registry or release download
(docs/testing.md#images): a private Docker engine (engine.py), the base image imported from the
rootfs tests/e2e/build/base_image.sh debootstraps, the node image built from docker/bitcoin-node
in its air-gapped mode, and stand-ins for the pool_sv2 and translator_sv2 images (builds.py);
selftest.py builds and runs all three."""
