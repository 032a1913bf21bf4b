"""The scoring server: one endpoint, all its deployments, in a group of worker processes.

Speaks the Open Inference Protocol (KServe V2 REST, with Triton's binary tensor extension), splits
traffic between deployments in-process, mirrors to a shadow, checks keys, batches concurrent
requests per deployment and exposes Prometheus metrics. Started as
``python -m mlops.serving --config DIR/config.json`` (see ``config`` for the file, ``control`` for
waiting until a new config is live). Imports only base modules of mlops, never deploy/spec/registry.

    supervisor   the master process: reserves the port, runs and restarts workers, forwards signals
    worker       one process: a SO_REUSEPORT socket, config reload, acks
    http         HTTP/1.1 (httptools, uvloop) app       the protocol: routes, auth, infer
    tensors      JSON/binary tensors          model     onnxruntime session, signature, scoring module
    batching     dynamic batching             routing   traffic split and mirror
    metrics      Prometheus metrics, read()   control   wait_applied()
"""
