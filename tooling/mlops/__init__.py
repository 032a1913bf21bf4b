"""mlops: declarative GitOps for MLOps.

Specs in git describe models, environments, pipelines, datasets and endpoints;
the reconciler works out what changed between two commits and builds, registers,
promotes and deploys exactly that.
"""

__version__ = "0.1.0"
