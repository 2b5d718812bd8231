#!/usr/bin/env python3
"""Renders deploy/helm/commitlog the way `helm template` would, for the subset it uses.

helm cannot be installed on the build machines, so the chart keeps to a subset of Go
templates that this small renderer implements exactly, and rejects everything else:

  {{ .Values.a.b }}            a scalar value (string, bool, int < 1e6, or null -> "")
  {{ .Release.Name }}          --release-name (default: commitlog)
  {{ .Release.Namespace }}     --namespace (default: default)
  {{ .Chart.Name }} / {{ .Chart.Version }} / {{ .Chart.AppVersion }}   from Chart.yaml
  {{ if .Values.a.b }} ... {{ end }}   a boolean value; no else, no nesting
  {{- and -}}                  trim whitespace (newlines included) before / after

Anything else (pipelines, functions, include, range, with, comments, variables, a
missing value, a map or a list, a float, an int >= 1e6 that helm would print as 1e+06)
is an error naming the file and line. Usage:

  render_chart.py [--set a.b=value]... [--release-name N] [--namespace NS]
                  [--output FILE] [--validate 1.29.0,1.37.0] [CHART_DIR]

--set values are parsed as YAML scalars (true, 3, "x"), like `helm --set`.
--validate checks every rendered manifest against the Kubernetes JSON schemas of each
version with kubernetes-validate, strictly (unknown fields are errors). Exit 0 when
all renders and validates; 1 with the reasons otherwise.
"""

import argparse
import copy
import os
import re
import sys

import yaml

DEFAULT_CHART = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "helm", "commitlog")

ACTION = re.compile(r"\{\{(.*?)\}\}", re.S)
IDENT_PATH = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
VALUE = re.compile(r"^\.Values\.(%s)$" % IDENT_PATH)
IF = re.compile(r"^if\s+\.Values\.(%s)$" % IDENT_PATH)
BUILTINS = {
    ".Release.Name": ("release", "name"),
    ".Release.Namespace": ("release", "namespace"),
    ".Chart.Name": ("chart", "name"),
    ".Chart.Version": ("chart", "version"),
    ".Chart.AppVersion": ("chart", "appVersion"),
}
GO_MAX_PLAIN_INT = 10**6  # Go's %v prints float64(1e6) as 1e+06; helm parses ints as floats


class RenderError(Exception):
    """A template uses something outside the subset, or a value is unusable."""


def lookup(values, dotted, where):
    node = values
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise RenderError("%s: .Values.%s is not set in values.yaml" % (where, dotted))
        node = node[part]
    return node


def scalar(value, what, where):
    """The text Go's text/template (through helm) prints for a value."""
    if value is None:
        return ""  # helm turns <no value> into ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if abs(value) >= GO_MAX_PLAIN_INT:
            raise RenderError(
                "%s: %s = %d would render as %s in helm; quote it as a string"
                % (where, what, value, "%g" % value)
            )
        return str(value)
    if isinstance(value, str):
        return value
    raise RenderError("%s: %s is a %s; only scalars can be substituted" % (where, what, type(value).__name__))


def render_text(text, name, values, context):
    """Renders one template's text. `context` holds release and chart facts."""
    out = []
    pos = 0
    # Pending right-trim from the previous action.
    trim_next = False
    in_if = None  # (line, condition value) while inside an if block
    skipping = False
    for m in ACTION.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        where = "%s:%d" % (name, line)
        literal = text[pos:m.start()]
        body = m.group(1)
        left_trim = body.startswith("- ") or body.startswith("-\n") or body.startswith("-\t")
        right_trim = body.endswith(" -") or body.endswith("\n-") or body.endswith("\t-")
        if body.startswith("-") and not left_trim:
            raise RenderError("%s: `{{-` must be followed by a space" % where)
        if body.endswith("-") and not right_trim:
            raise RenderError("%s: `-}}` must be preceded by a space" % where)
        inner = body[1:] if left_trim else body
        inner = inner[:-1] if right_trim else inner
        inner = inner.strip()
        if trim_next:
            literal = literal.lstrip(" \t\r\n")
        if left_trim:
            literal = literal.rstrip(" \t\r\n")
        if not skipping:
            out.append(literal)
        trim_next = right_trim
        pos = m.end()

        if inner == "end":
            if in_if is None:
                raise RenderError("%s: {{ end }} without {{ if }}" % where)
            in_if, skipping = None, False
            continue
        mi = IF.match(inner)
        if mi:
            if in_if is not None:
                raise RenderError("%s: nested {{ if }} is outside the supported subset" % where)
            cond = lookup(values, mi.group(1), where)
            if not isinstance(cond, bool):
                raise RenderError("%s: if .Values.%s must be true or false, is %r" % (where, mi.group(1), cond))
            in_if, skipping = (line, cond), not cond
            continue
        mv = VALUE.match(inner)
        if mv:
            text_value = scalar(lookup(values, mv.group(1), where), ".Values." + mv.group(1), where)
        elif inner in BUILTINS:
            section, key = BUILTINS[inner]
            text_value = scalar(context[section][key], inner, where)
        else:
            raise RenderError("%s: `{{%s}}` is outside the supported template subset" % (where, body))
        if not skipping:
            out.append(text_value)
    if in_if is not None:
        raise RenderError("%s:%d: {{ if }} without {{ end }}" % (name, in_if[0]))
    rest = text[pos:]
    if trim_next:
        rest = rest.lstrip(" \t\r\n")
    out.append(rest)
    rendered = "".join(out)
    for token in ("{{", "}}"):
        if token in rendered:
            line = rendered.count("\n", 0, rendered.index(token)) + 1
            raise RenderError("%s: stray `%s` after rendering (output line %d)" % (name, token, line))
    return rendered


def set_value(values, assignment):
    if "=" not in assignment:
        raise RenderError("--set %r: expected path=value" % assignment)
    path, raw = assignment.split("=", 1)
    node = values
    parts = path.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise RenderError("--set %s: %s is not a map" % (path, part))
    node[parts[-1]] = yaml.safe_load(raw) if raw != "" else ""


def render_chart(chart_dir, sets=(), release_name="commitlog", namespace="default"):
    """Returns (manifests, notes, text): manifests is [(template file, document dict)],
    text the rendered templates as `helm template` prints them."""
    with open(os.path.join(chart_dir, "Chart.yaml")) as f:
        chart = yaml.safe_load(f)
    with open(os.path.join(chart_dir, "values.yaml")) as f:
        values = yaml.safe_load(f) or {}
    values = copy.deepcopy(values)
    for s in sets:
        set_value(values, s)
    context = {"release": {"name": release_name, "namespace": namespace}, "chart": chart}
    tdir = os.path.join(chart_dir, "templates")
    manifests, notes, texts = [], "", []
    for fname in sorted(os.listdir(tdir)):
        path = os.path.join(tdir, fname)
        rel = "%s/templates/%s" % (chart["name"], fname)
        if fname.startswith("_") or not (fname.endswith(".yaml") or fname == "NOTES.txt"):
            raise RenderError("%s: only *.yaml templates and NOTES.txt are supported (no helpers)" % rel)
        with open(path) as f:
            text = render_text(f.read(), rel, values, context)
        if fname == "NOTES.txt":
            notes = text
            continue
        try:
            docs = [d for d in yaml.safe_load_all(text) if d is not None]
        except yaml.YAMLError as e:
            raise RenderError("%s: rendered text is not YAML: %s" % (rel, e))
        for d in docs:
            if not isinstance(d, dict) or "kind" not in d or "apiVersion" not in d:
                raise RenderError("%s: a document without kind/apiVersion" % rel)
            manifests.append((rel, d))
        texts.append("---\n# Source: %s\n%s" % (rel, text.lstrip("\n")))
    return manifests, notes, "".join(texts)


def validate(manifests, versions):
    """Problems found by kubernetes-validate (strict) for each Kubernetes version."""
    import kubernetes_validate

    problems = []
    for version in versions:
        for rel, doc in manifests:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                problems.append(
                    "%s: %s %s invalid for Kubernetes %s at %s: %s"
                    % (rel, doc["kind"], doc["metadata"].get("name"), version,
                       "/".join(str(p) for p in e.path), e.message)
                )
            except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as e:
                problems.append("%s: %s: no usable schema for Kubernetes %s: %s" % (rel, doc["kind"], version, e))
    return problems


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("chart", nargs="?", default=DEFAULT_CHART)
    p.add_argument("--set", action="append", default=[], dest="sets")
    p.add_argument("--release-name", default="commitlog")
    p.add_argument("--namespace", default="default")
    p.add_argument("--output", help="write the manifests here (default: stdout)")
    p.add_argument("--validate", help="comma-separated Kubernetes versions, e.g. 1.29.0,1.37.0")
    a = p.parse_args(argv)
    try:
        manifests, _notes, text = render_chart(a.chart, a.sets, a.release_name, a.namespace)
    except RenderError as e:
        print("render_chart: FAIL: %s" % e, file=sys.stderr)
        return 1
    if a.output:
        with open(a.output, "w") as f:
            f.write(text)
    elif not a.validate:
        sys.stdout.write(text)
    if a.validate:
        versions = [v.strip() for v in a.validate.split(",") if v.strip()]
        problems = validate(manifests, versions)
        for pr in problems:
            print("render_chart: FAIL: " + pr, file=sys.stderr)
        if problems:
            return 1
        print("render_chart: %d manifests (%s) valid for Kubernetes %s (strict)%s"
              % (len(manifests), ", ".join(d["kind"] for _, d in manifests), ", ".join(versions),
                 (" with " + " ".join("--set " + s for s in a.sets)) if a.sets else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
