"""Batch endpoints: score a file (CSV, JSONL or Parquet) in mini-batches with bounded memory.

    job.py       settings of one run: the endpoint's ``batch`` block, its paths kept inside the repository
    readers.py   the input, streamed one mini-batch at a time; rows that do not parse are set aside
    model.py     the ONNX model: features in, labels and probabilities (or predictions) out, per row
    writers.py   predictions next to the rows' ids (CSV or JSONL), and the errors log
    journal.py   progress of a run, so that a killed run resumes at its last completed mini-batch
    run.py       the loop: read, score, write, journal; stop after the error threshold
    records.py   the store's record of the last successful scoring (what reconcile compares)
    deploy.py    a batch endpoint's deploy action: score again only when the model or the input changed

pyarrow does the parsing and writing (its CSV and JSON readers and CSV writer run in C++), so a run costs
about what a bare onnxruntime loop over the same file costs.
"""
