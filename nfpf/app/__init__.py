"""``nfpf-select``: choose which images of one's own folder to label (sources -> features ->
selection -> writers)."""
