"""Generates the JSON Schemas (kept as a script so the schemas stay consistent). Run: python _gen.py"""
import json
from pathlib import Path

BASE = "https://mlops-gitops.dev/schemas/"
NAME = {"type": "string", "pattern": "^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$",
        "description": "Lowercase letters, digits, '.', '_' and '-'; starts and ends with a letter or digit."}
RELPATH = {"type": "string", "minLength": 1, "description": "A path relative to the repository root (POSIX separators)."}
STRMAP = {"type": "object", "additionalProperties": {"type": "string"}}
ENVMAP = {"type": "object", "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
          "additionalProperties": {"type": "string"},
          "description": "Environment variables: NAME -> value (names of letters, digits and '_', not starting with a digit)"}
SCALAR = {"type": ["string", "number", "integer", "boolean", "null"]}
PARAMS = {"type": "object", "description": "Parameters: name -> value (scalars, lists or objects).",
          "additionalProperties": {"type": ["string", "number", "integer", "boolean", "null", "array", "object"]}}


def doc(kind, title, props, required, extra=None):
    s = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": BASE + kind.lower() + ".json",
        "title": title,
        "type": "object",
        "additionalProperties": False,
        "required": ["kind", "name", *required],
        "properties": {"kind": {"const": kind}, "name": NAME, "description": {"type": "string"}, **props},
    }
    if extra:
        s.update(extra)
    return s


def obj(props, required=(), **kw):
    return {"type": "object", "additionalProperties": False, "properties": props, "required": list(required), **kw}


METRIC_GATE = obj({"metric": {"type": "string"}, "op": {"enum": [">=", ">", "<=", "<", "=="]},
                   "threshold": {"type": "number"}}, ["metric", "op", "threshold"])
CHAMPION_GATE = obj({"champion": obj({"metrics": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                                      "min_delta": {"type": "number", "default": 0},
                                      "data": {"type": "string", "description": "Dataset evaluated on (held-out)"}},
                                     ["metrics"])}, ["champion"])
LATENCY_GATE = obj({"latency": obj({"p50_ms": {"type": "number", "exclusiveMinimum": 0},
                                    "p95_ms": {"type": "number", "exclusiveMinimum": 0},
                                    "batch_size": {"type": "integer", "minimum": 1, "default": 1},
                                    "runs": {"type": "integer", "minimum": 10, "default": 200}})}, ["latency"])
SIGNATURE_GATE = obj({"signature": obj({"allow_breaking": {"type": "boolean", "default": False}})}, ["signature"])
APPROVAL_GATE = obj({"approval": obj({"required": {"type": "integer", "minimum": 1, "default": 1},
                                      "approvers": {"type": "array", "items": {"type": "string"}}})}, ["approval"])
SOAK_GATE = obj({"soak": obj({"hours": {"type": "number", "exclusiveMinimum": 0,
                                        "description": "Hours the version must have held the previous stage "
                                                       "without a rollback"}}, ["hours"])}, ["soak"])

STORE = obj({
    "type": {"enum": ["local", "s3", "git"], "default": "local",
             "description": "local: a directory; s3: a bucket; git: refs/mlops/ pushed to the repository's remote"},
    "path": {**RELPATH, "description": "Local store directory (default .mlops)"},
    "bucket": {"type": "string"}, "prefix": {"type": "string"},
    "endpoint_url": {"type": "string", "description": "S3-compatible endpoint (MinIO, moto, Ceph...)"},
    "region": {"type": "string"},
    "remote": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$", "default": "origin",
               "description": "git: the configured remote that refs/mlops/ is fetched from and pushed to. Left "
                              "out it is origin, and until the clone has one the state stays in the clone and is "
                              "published by the first command that finds it; named here, a missing remote is an "
                              "error"},
    "max_blob_mb": {"type": "number", "exclusiveMinimum": 0, "maximum": 100, "default": 50,
                    "description": "git: the largest artifact kept in git (GitHub refuses files over 100 MB); "
                                   "use s3 for larger ones"},
}, ["type"], allOf=[{"if": {"properties": {"type": {"const": "s3"}}}, "then": {"required": ["bucket"]}}])

NOTIFICATION = obj({
    "type": {"enum": ["log", "webhook", "github"]},
    "url": {"type": "string", "pattern": "^https?://[^/@\\s]+(/\\S*)?$", "description": "webhook: where to POST (http/https)"},
    "path": {**RELPATH, "description": "log: the JSON Lines file (default .mlops/events.jsonl)"},
    "secret_env": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
                   "description": "webhook: environment variable holding the HMAC-SHA256 key (X-Mlops-Signature-256)"},
    "events": {"type": "array", "items": {"type": "string", "minLength": 1},
               "description": "Glob patterns on event names (model.*, drift.detected); default: all"},
    "repository": {"type": "string", "pattern": "^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$",
                   "description": "github: OWNER/NAME (default $GITHUB_REPOSITORY)"},
    "mode": {"enum": ["issue", "dispatch"], "default": "issue",
             "description": "github: comment on an issue per subject, or repository_dispatch"},
    "labels": {"type": "array", "items": {"type": "string", "minLength": 1},
               "description": "github issue mode: labels of the issue (found and created with them)"},
    "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 300,
                "description": "webhook: seconds per request (default 5)"},
}, ["type"], allOf=[{"if": {"properties": {"type": {"const": "webhook"}}}, "then": {"required": ["url"]}}])

PROJECT = doc("Project", "mlops.yaml: the project", {
    "stages": {"type": "array", "minItems": 1, "description": "Ordered stages; a version enters a stage only from the one before it.",
               "items": obj({"name": NAME, "description": {"type": "string"},
                             "auto": {"type": "boolean",
                                      "description": "Entered by every newly registered version whose gates pass, "
                                                     "without a pin (default: true for the first stage only)"},
                             "gates": {"type": "array", "items": {"oneOf": [METRIC_GATE, CHAMPION_GATE, LATENCY_GATE,
                                                                             SIGNATURE_GATE, APPROVAL_GATE, SOAK_GATE]}}},
                            ["name"])},
    "stores": obj({"artifacts": STORE,
                   "registry": obj({"backend": {"enum": ["store", "git"], "default": "store"},
                                    "remote": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$",
                                               "default": "origin",
                                               "description": "backend git: as stores.artifacts.remote"}})}),
    "targets": {"type": "object", "propertyNames": NAME,
                "additionalProperties": obj({"type": {"enum": ["local", "docker", "kubernetes"]},
                                             "context": {"type": "string"}, "namespace": {"type": "string"},
                                             "host": {"type": "string"}, "port_range": {"type": "array", "items": {"type": "integer"}},
                                             "docker_host": {"type": "string"},
                                             # kubernetes (see mlops.deploy.kubernetes)
                                             "image": {"type": "string", "minLength": 1,
                                                       "description": "kubernetes: the serving image the cluster pulls"},
                                             "gateway": {"type": "string", "minLength": 1,
                                                         "description": "kubernetes: the Gateway (NAME or "
                                                                        "NAMESPACE/NAME) the HTTPRoute attaches to"},
                                             "hostnames": {"type": "array", "items": {"type": "string"}},
                                             "kserve": {"type": "boolean", "description": "kubernetes: a KServe "
                                                        "InferenceService instead of Deployments and an HTTPRoute"},
                                             "s3_secret": {"type": "string", "minLength": 1},
                                             "model_volume": {"type": "string", "minLength": 1},
                                             "rollout_timeout": {"type": "integer", "minimum": 1},
                                             "prometheus": {"type": "string", "minLength": 1},
                                             # docker (see mlops.deploy.docker)
                                             "network": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"},
                                             "base_image": {"type": "string"}},
                                            ["type"])},
    "default_target": NAME,
    "notifications": {"type": "array", "description": "Where lifecycle events (CloudEvents) go, besides the local log",
                      "items": NOTIFICATION},
}, ["stages"])

ENVIRONMENT = doc("Environment", "An environment: software a step or deployment runs in", {
    "python": {"type": "string", "pattern": "^3\\.[0-9]+$",
               "description": "Pinned major.minor; leave out to use the interpreter that runs mlops"},
    "requirements": {"type": "array", "items": {"type": "string", "minLength": 1},
                     "description": "PEP 508 requirements, or relative paths of wheels in the repository"},
    "lockfile": RELPATH,
    "base_image": {"type": "string", "description": "Local Docker image to build FROM (no pulls)"},
    "system_packages": {"type": "array", "items": {"type": "string"}},
    "variables": ENVMAP,
    "system_site_packages": {"type": "boolean", "default": False,
                             "description": "Let the local virtualenv see the packages of the python that runs mlops"},
}, [])

DATASET = doc("Dataset", "A versioned data asset", {
    "path": RELPATH,
    "digest": {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"},
    "tags": STRMAP,
}, ["path"])

SECRETS = {"type": "array", "uniqueItems": True,
           "items": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
           "description": "Names of host environment variables passed to the step at run time; their values are "
                          "masked (***) in everything mlops prints or stores and never enter the cache key"}

STEP = obj({
    "name": NAME,
    "command": {"type": "array", "minItems": 1, "items": {"type": ["string", "number"]},
                "description": "argv (never a shell string); ${inputs.X} ${outputs.X} ${params.X} are substituted"},
    "inputs": {"type": "object", "additionalProperties": {"type": "string"},
               "description": "name -> repo path, ${steps.S.outputs.O} or ${datasets.D}"},
    "outputs": {"type": "object", "additionalProperties": RELPATH},
    "params": PARAMS,
    "environment": NAME,
    "code": {"type": "array", "items": RELPATH},
    "metrics": {"type": "string", "description": "Name of an output holding a JSON object of metrics"},
    "env": ENVMAP,
    "timeout": {"type": "number", "exclusiveMinimum": 0},
    "secrets": SECRETS,
}, ["name", "command"])

PIPELINE = doc("Pipeline", "A reproducible pipeline of steps", {
    "environment": NAME,
    "params": PARAMS,
    "secrets": {**SECRETS, "description": "Secrets every step gets (see a step's secrets)"},
    "steps": {"type": "array", "minItems": 1, "items": STEP},
}, ["steps"])

MODEL = doc("Model", "A model: files produced by a pipeline step or kept in the repository", {
    "flavor": {"enum": ["onnx", "sklearn", "pickle", "custom"]},
    "source": {"oneOf": [
        obj({"pipeline": NAME, "artifact": {"type": "string", "pattern": "^[^.]+\\.[^.]+$",
                                              "description": "STEP.OUTPUT"},
             "metrics": {"type": "string", "pattern": "^[^.]+\\.[^.]+$", "description": "STEP.OUTPUT"}},
            ["pipeline", "artifact"]),
        obj({"files": {"type": "array", "minItems": 1, "items": RELPATH},
             "metrics": RELPATH}, ["files"]),
    ]},
    "tags": STRMAP,
    "stages": {"type": "object", "propertyNames": NAME, "additionalProperties": {"type": "integer", "minimum": 1},
               "description": "Which version each stage holds (desired state): STAGE -> VERSION. A promotion is a change "
                              "of this map; reconcile moves the stage only when the stage's gates pass."},
    "evaluation": obj({
        "data": {"type": "string", "minLength": 1,
                 "description": "Held-out CSV scored by mlops: STEP.OUTPUT of the model's pipeline, "
                                "${datasets.NAME} or a repository path"},
        "label": {"type": "string", "minLength": 1, "description": "The CSV column holding the true label"},
        "task": {"enum": ["classification", "regression"]},
        "repeats": {"type": "integer", "minimum": 1, "maximum": 100, "default": 5,
                    "description": "Permutation importance: shuffles per feature"},
        "seed": {"type": "integer", "minimum": 0, "maximum": 4294967295, "default": 0},
    }, ["data", "label", "task"]),
    "monitoring": obj({
        "reference": {"type": "string", "minLength": 1,
                      "description": "The training data live inputs are compared with: STEP.OUTPUT of the model's "
                                     "pipeline, ${datasets.NAME} or a repository path (default: the tabular input "
                                     "nearest the model's artifact that is not its evaluation data)"},
        "label": {"type": "string", "minLength": 1,
                  "description": "The reference's label column, left out of the features (default: evaluation.label)"},
    }),
}, ["flavor", "source"])

DEPLOYMENT = obj({
    "name": NAME,
    "model": {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]*(@[a-z0-9._-]+)?$",
              "description": "NAME, NAME@VERSION or NAME@STAGE"},
    "environment": NAME,
    "instances": {"type": "integer", "minimum": 0, "default": 1},
    "batching": obj({"max_batch_size": {"type": "integer", "minimum": 1},
                     "max_delay_ms": {"type": "number", "minimum": 0}}),
    "resources": obj({"cpu": {"type": ["string", "number"]}, "memory": {"type": "string"}}),
    "scoring": {**RELPATH, "description": "Optional module with init()/preprocess()/postprocess()"},
    "capture": obj({"sample_rate": {"type": "number", "minimum": 0, "maximum": 1},
                    "max_mb": {"type": "number", "minimum": 1}}),
}, ["name", "model"])

ENDPOINT = doc("Endpoint", "An online or batch endpoint with its deployments", {
    "type": {"enum": ["online", "batch"]},
    "target": NAME,
    "deployments": {"type": "array", "minItems": 1, "items": DEPLOYMENT},
    "traffic": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0, "maximum": 100}},
    "mirror": obj({"deployment": NAME, "percent": {"type": "number", "exclusiveMinimum": 0, "maximum": 100}},
                  ["deployment"]),
    "rollout": obj({"strategy": {"enum": ["all-at-once", "blue-green", "canary"]},
                    "steps": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 100}},
                    "interval_seconds": {"type": "number", "minimum": 0},
                    "analysis": obj({"max_error_rate": {"type": "number", "minimum": 0, "maximum": 1},
                                     "max_p99_ms": {"type": "number", "exclusiveMinimum": 0},
                                     "min_requests": {"type": "integer", "minimum": 0},
                                     "inconclusive": {"enum": ["rollback", "promote"],
                                                      "description": "Too few requests to judge a step: "
                                                                     "roll back (default) or go on"}})},
                   ["strategy"]),
    "monitoring": obj({
        "schedule": {"type": "string", "description": "Cron line of the scheduled monitoring workflow (documentation "
                                                      "for people; the workflow file holds the real schedule)"},
        "window_hours": {"type": "number", "exclusiveMinimum": 0, "default": 24,
                         "description": "Compare the inputs captured in the last N hours"},
        "min_rows": {"type": "integer", "minimum": 1, "default": 100,
                     "description": "Fewer captured rows than this: no drift verdict (reported as not enough data)"},
        "drift": obj({"threshold": {"type": "number", "exclusiveMinimum": 0,
                                    "description": "Override every test's threshold (distance, or p-value)"},
                      "share": {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "default": 0.5,
                                "description": "The data set drifts when this share of its features drift"},
                      "features": {"type": "array", "items": {"type": "string", "minLength": 1},
                                   "description": "Only these features (default: all)"},
                      "tests": {"type": "object", "propertyNames": {"minLength": 1},
                                "additionalProperties": {"enum": ["wasserstein", "jensenshannon", "ks", "chisquare",
                                                                  "z", "psi"]},
                                "description": "FEATURE -> test, instead of the choice by kind and size"},
                      "thresholds": {"type": "object", "propertyNames": {"minLength": 1},
                                     "additionalProperties": {"type": "number", "exclusiveMinimum": 0},
                                     "description": "FEATURE -> threshold"},
                      "categorical": {"type": "array", "items": {"type": "string", "minLength": 1}},
                      "numerical": {"type": "array", "items": {"type": "string", "minLength": 1}},
                      "prediction": {"type": "boolean", "default": True,
                                     "description": "Also compare the model's outputs (prediction drift)"}}),
        "quality": obj({"max_missing": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.05,
                                        "description": "Growth of the share of missing values over the reference's "
                                                       "beyond which quality fails"},
                        "max_out_of_range": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.01,
                                             "description": "Share of numbers outside the reference's range"},
                        "max_new_categories": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.0,
                                               "description": "Share of values of a category never seen in training"}}),
        "alerts": {"type": "array", "items": obj({
            "name": NAME,
            "metric": {"enum": ["error_rate", "p50_ms", "p95_ms", "p99_ms", "requests"]},
            "op": {"enum": [">", ">=", "<", "<="]},
            "threshold": {"type": "number", "minimum": 0},
            "deployment": NAME,
            "min_requests": {"type": "integer", "minimum": 0, "default": 1,
                             "description": "No verdict on fewer requests since the last monitor run"}},
            ["metric", "op", "threshold"]),
            "description": "Operational alert rules, judged on the requests since the last `mlops monitor`"},
        "action": {"enum": ["none", "issue", "retrain"], "default": "none",
                   "description": "On drift or failed quality: nothing more than the events, keep one GitHub issue "
                                  "open and comment on it, or dispatch the retraining workflow"},
    }),
    "batch": obj({"input": {**RELPATH, "description": "The file to score: .csv (with a header), .jsonl or .parquet"},
                  "output": {**RELPATH, "description": "Where predictions go, next to each row's id: .csv or .jsonl "
                                                       "(a new, untracked path; rows that fail go to OUTPUT.errors.jsonl)"},
                  "mini_batch_size": {"type": "integer", "minimum": 1, "default": 10000,
                                      "description": "Rows scored (and journaled) at a time"},
                  "error_threshold": {"type": "integer", "minimum": -1, "default": -1,
                                      "description": "Rows that may fail before the run stops; -1: no limit"},
                  "id_column": {"type": "string", "minLength": 1,
                                "description": "The input column that identifies a row (default: its number)"}},
                 ["input", "output"]),
    "auth": obj({"mode": {"enum": ["key", "none"], "default": "key",
                          "description": "key: every request needs a valid key (401 otherwise)"},
                 "secret": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
                            "description": "Host environment variable holding the initial key (never stored)"}}),
    "serving": obj({"port": {"type": "integer", "minimum": 1, "maximum": 65535,
                             "description": "Local and docker targets: the port to bind (default: a free one)"},
                    "host": {"type": "string", "default": "127.0.0.1",
                             "description": "The address to bind; 127.0.0.1 unless told otherwise"},
                    "workers": {"type": "integer", "minimum": 1, "maximum": 64,
                                "description": "Server processes (default: the machine's cores)"},
                    "timeout_ms": {"type": "number", "exclusiveMinimum": 0, "default": 10000},
                    "max_request_mb": {"type": "number", "exclusiveMinimum": 0, "maximum": 1024, "default": 16}}),
}, ["type", "deployments"])

if __name__ == "__main__":
    here = Path(__file__).resolve().parents[1] / "mlops" / "spec" / "schemas"
    for kind, schema in [("project", PROJECT), ("environment", ENVIRONMENT), ("dataset", DATASET),
                         ("pipeline", PIPELINE), ("model", MODEL), ("endpoint", ENDPOINT)]:
        (here / f"{kind}.json").write_text(json.dumps(schema, indent=2) + "\n")
