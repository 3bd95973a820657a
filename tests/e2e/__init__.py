"""End-to-end harness: the real Pulumi CLI and providers against a real kube-apiserver, and the real
sv2 apps on loopback. Run by make (`make e2e-tools`, `make e2e`, `make bench-e2e`), not by pytest.

    run.py              make e2e: every stage, one line per stack and step
    bench.py            make bench-e2e
    tools.sh            make e2e-tools: the toolchain, pinned in versions.env (toolchain.py reads both)
    processes.py        the one way to run a process: start, wait, stop by pid, die with the harness
    project.py          a throwaway copy of the project driven with the CLI
    stack_assertions.py what each step asserts of the stack's objects in the cluster
    draws.py, mutants.py, stacks/   random settings and their regressions; mutants the e2e must catch
    cluster/            the loopback control plane (control_plane.py), its self-test, or SV2_E2E_KUBECONFIG;
                        a node whose pods run (node_cluster.py, node_selftest.py)
    sv2_apps/           pool_sv2 and translator_sv2 on the rendered configs, with fake-tp
    chain/              a private signet's stored configs on the real node, sv2-tp, pool and
                        translator (the node image's own scripts); a block mined through the probe
    build/              what no registry serves, built from upstream sources: the language host,
                        the random, kubernetes and docker providers (plugins.sh), Bitcoin Core and
                        sv2-tp (chain.sh)
"""
