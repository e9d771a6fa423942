#!/usr/bin/env python3
"""Regenerates the JSON schemas in deploy/schemas/ that deploy/check.sh gives kubeconform.

Kubernetes kinds: the "local-strict" schemas of PyPI kubernetes-validate (upstream OpenAPI,
additionalProperties: false everywhere), made standalone: each kind's file carries the
definitions it needs under $defs, descriptions dropped. cert-manager kinds: the CRD's
openAPIV3Schema converted the same way kubeconform's openapi2jsonschema does in strict mode
(additionalProperties: false wherever properties are listed, int-or-string as oneOf).

    python3 -m pip download --no-deps kubernetes-validate==1.37.0 -d /tmp/kv
    (cd /tmp/kv && unzip -q kubernetes_validate-*.whl)
    git -C <cert-manager checkout> show v1.x:deploy/crds/cert-manager.io_certificates.yaml > /tmp/crt.yaml
    ... issuers likewise, then:
    deploy/schemas/vendor.py /tmp/kv/kubernetes_validate/kubernetes-json-schema/v1.30.0-local-strict \\
        /tmp/crt.yaml /tmp/iss.yaml

Add a kind here (and re-run) when the manifests start using it; check.sh fails on a kind with no
schema. File names follow kubeconform's {{.ResourceKind}}{{.KindSuffix}}.json.
"""
import json, os, re, sys
import yaml

KINDS = [  # kubernetes-validate file stem, one per kind the manifests use
    "namespace-v1", "configmap-v1", "secret-v1", "service-v1",
    "deployment-apps-v1", "statefulset-apps-v1",
    "horizontalpodautoscaler-autoscaling-v2", "poddisruptionbudget-policy-v1",
    "networkpolicy-networking-v1",
]
OUT = os.path.dirname(os.path.abspath(__file__))
REF = re.compile(r"^(?:/api/_definitions\.json)?#/\$defs/(.+)$")


def strip(schema, refs):
    """Copy of a schema without descriptions, collecting and rewriting $refs."""
    if isinstance(schema, list):
        return [strip(s, refs) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for k, v in schema.items():
        if k == "description":
            continue
        if k in ("properties", "$defs", "patternProperties"):
            out[k] = {name: strip(s, refs) for name, s in v.items()}
        elif k == "$ref":
            m = REF.match(v)
            if not m:
                sys.exit(f"unexpected $ref {v}")
            refs.add(m.group(1))
            out[k] = "#/$defs/" + m.group(1)
        else:
            out[k] = strip(v, refs)
    return out


def write(name, schema):
    with open(os.path.join(OUT, name + ".json"), "w") as f:
        json.dump(schema, f, indent=1, sort_keys=True)
        f.write("\n")


def kubernetes(src):
    defs = json.load(open(os.path.join(src, "_definitions.json")))["$defs"]
    for stem in KINDS:
        refs = set()
        root = strip(json.load(open(os.path.join(src, stem + ".json"))), refs)
        done, todo = {}, set(refs)
        while todo:
            name = todo.pop()
            more = set()
            done[name] = strip(defs[name], more)
            todo |= more - set(done)
        root["$defs"] = dict(sorted(done.items()))
        root["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        write(stem, root)


def openapi(s):
    """openAPIV3Schema -> strict JSON schema (as kubeconform's openapi2jsonschema.py -strict)."""
    if isinstance(s, list):
        return [openapi(x) for x in s]
    if not isinstance(s, dict):
        return s
    out = {}
    for k, v in s.items():
        if k == "description":
            continue
        if k == "properties":
            out[k] = {name: openapi(x) for name, x in v.items()}
        else:
            out[k] = openapi(v)
    if s.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["oneOf"] = [{"type": "string"}, {"type": "integer"}]
    if "properties" in out and "additionalProperties" not in out \
            and not s.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def crd(path):
    doc = yaml.safe_load(open(path))
    group, kind = doc["spec"]["group"], doc["spec"]["names"]["kind"]
    for v in doc["spec"]["versions"]:
        if not v.get("served"):
            continue
        schema = openapi(v["schema"]["openAPIV3Schema"])
        # the API server fills these in; manifests may carry any ObjectMeta
        schema["properties"]["metadata"] = {"type": "object"}
        schema["properties"]["apiVersion"] = {"type": "string", "enum": [f"{group}/{v['name']}"]}
        schema["properties"]["kind"] = {"type": "string", "enum": [kind]}
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        write(f"{kind.lower()}-{group.split('.')[0]}-{v['name']}", schema)


if __name__ == "__main__":
    kubernetes(sys.argv[1])
    for p in sys.argv[2:]:
        crd(p)
