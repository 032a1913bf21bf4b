"""The model registry and dataset versions, on top of any ArtifactStore.

``models`` and ``datasets`` hold the API; ``records`` the immutable values; ``versions`` the
record layout and race-free version numbering; ``signature`` reads ONNX signatures;
``lineage`` reads git; ``gitrefs`` + ``composite`` keep records as git refs on origin.
"""
