"""The command-line entry points, installed as ``nfpf.cli``: ``nfpf-run`` (:mod:`.run`),
``nfpf-report`` (:mod:`.report`) and ``nfpf-select`` (:mod:`.select`)."""
