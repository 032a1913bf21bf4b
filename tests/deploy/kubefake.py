"""A stand-in ``kubectl`` for the kubernetes target's tests: a real executable, put first on PATH.

It keeps the "cluster" as a JSON file of objects, records every invocation (argv and stdin) as a JSON line, and
implements the subset of kubectl the target uses: ``apply -f -`` (server-side: the objects replace their
namesakes), ``get KINDS -l SELECTOR -o json``, ``delete KINDS -l SELECTOR`` / ``delete KIND NAME``, ``patch KIND
NAME --type=merge -p JSON``, ``rollout status deployment/NAME``. ``FAKE_KUBECTL_FAIL=VERB`` makes that verb fail as
kubectl does (a message on stderr, exit 1).
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

SCRIPT = r'''
import json, os, sys
import yaml

KINDS = {"configmaps": "ConfigMap", "configmap": "ConfigMap", "deployments.apps": "Deployment",
         "deployment.apps": "Deployment", "deployment": "Deployment", "services": "Service", "service": "Service",
         "horizontalpodautoscalers.autoscaling": "HorizontalPodAutoscaler",
         "horizontalpodautoscaler.autoscaling": "HorizontalPodAutoscaler",
         "httproutes.gateway.networking.k8s.io": "HTTPRoute", "httproute.gateway.networking.k8s.io": "HTTPRoute",
         "inferenceservices.serving.kserve.io": "InferenceService",
         "inferenceservice.serving.kserve.io": "InferenceService"}

state_path, log_path = os.environ["FAKE_KUBECTL_STATE"], os.environ["FAKE_KUBECTL_LOG"]
argv = sys.argv[1:]
stdin = sys.stdin.read() if "-f" in argv else ""
with open(log_path, "a") as f:
    f.write(json.dumps({"argv": argv, "stdin": stdin}) + "\n")
objects = json.load(open(state_path)) if os.path.exists(state_path) else []

def opt(name):
    return argv[argv.index(name) + 1] if name in argv else None

ctx, ns = opt("--context"), opt("--namespace")
rest = [a for i, a in enumerate(argv) if a not in ("--context", "--namespace") and
        (i == 0 or argv[i - 1] not in ("--context", "--namespace"))]
verb = rest[0]
if os.environ.get("FAKE_KUBECTL_FAIL") == verb:
    sys.stderr.write('error: the server could not find the requested resource\nError from server (Forbidden): '
                     + verb + ' is forbidden for "ci"\n')
    sys.exit(1)

def matches(obj, selector):
    labels = obj.get("metadata", {}).get("labels") or {}
    return all(labels.get(k) == v for k, _, v in (t.partition("=") for t in selector.split(",")))

def kinds(text):
    return {KINDS[k] for k in text.split(",")}

def save():
    json.dump(objects, open(state_path, "w"), indent=1)

if verb == "apply":
    assert "--server-side" in rest, rest
    for doc in yaml.safe_load_all(stdin):
        if not doc:
            continue
        doc["metadata"]["namespace"] = ns
        objects = [o for o in objects if (o["kind"], o["metadata"]["name"]) != (doc["kind"], doc["metadata"]["name"])]
        objects.append(doc)
    save()
    print("applied")
elif verb == "get":
    want, selector = kinds(rest[1]), opt("-l")
    items = [o for o in objects if o["kind"] in want and (selector is None or matches(o, selector))]
    print(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
elif verb == "delete":
    if "-l" in rest:
        want, selector = kinds(rest[1]), opt("-l")
        objects = [o for o in objects if not (o["kind"] in want and matches(o, selector))]
    else:
        kind, name = KINDS[rest[1]], rest[2]
        objects = [o for o in objects if (o["kind"], o["metadata"]["name"]) != (kind, name)]
    save()
elif verb == "patch":
    kind, name, patch = KINDS[rest[1]], rest[2], json.loads(opt("-p"))
    assert "--type=merge" in rest, rest
    def merge(doc, p):
        if not isinstance(p, dict):
            return p
        out = dict(doc) if isinstance(doc, dict) else {}
        for k, v in p.items():
            if v is None:
                out.pop(k, None)
            else:
                out[k] = merge(out.get(k), v)
        return out
    found = False
    for i, o in enumerate(objects):
        if (o["kind"], o["metadata"]["name"]) == (kind, name):
            objects[i] = merge(o, patch)
            found = True
    if not found:
        sys.stderr.write(f'Error from server (NotFound): {rest[1]} "{name}" not found\n')
        sys.exit(1)
    save()
elif verb == "rollout":
    name = rest[2].split("/", 1)[1]
    if not any(o["kind"] == "Deployment" and o["metadata"]["name"] == name for o in objects):
        sys.stderr.write(f'Error from server (NotFound): deployments.apps "{name}" not found\n')
        sys.exit(1)
    print(f'deployment "{name}" successfully rolled out')
else:
    sys.stderr.write(f"fake kubectl: unsupported {verb}\n")
    sys.exit(2)
'''


class FakeKubectl:
    """The fake ``kubectl`` in ``directory``; ``env`` is the environment that puts it first on PATH."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.exe = directory / "kubectl"
        self.exe.write_text(f"#!{sys.executable}\n{SCRIPT}", encoding="utf-8")
        self.exe.chmod(self.exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        self.state = directory / "cluster.json"
        self.log = directory / "calls.jsonl"
        self.env = {**os.environ, "PATH": f"{directory}{os.pathsep}{os.environ.get('PATH', '')}",
                    "FAKE_KUBECTL_STATE": str(self.state), "FAKE_KUBECTL_LOG": str(self.log)}

    def calls(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text(encoding="utf-8").splitlines()]

    def verbs(self) -> list[list[str]]:
        """Each call's argv after the global --context/--namespace flags."""
        return [c["argv"][4:] for c in self.calls()]

    def objects(self) -> list[dict[str, Any]]:
        return json.loads(self.state.read_text(encoding="utf-8")) if self.state.exists() else []

    def write_objects(self, objects: list[dict[str, Any]]) -> None:
        self.state.write_text(json.dumps(objects), encoding="utf-8")
