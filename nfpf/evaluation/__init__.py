"""One benchmark run as a straight line (:mod:`~nfpf.evaluation.pipeline`): select, label
once, train a downstream classifier (:mod:`~nfpf.evaluation.classifiers`), score it
(:mod:`~nfpf.evaluation.evaluate`), and record the run (:mod:`~nfpf.evaluation.records`,
:mod:`~nfpf.evaluation.tracking`)."""
