#!/usr/bin/env python3
"""Tests of the chart renderer and of the rendered chart (run by `make deploy-check`).

* The renderer implements the template subset exactly and rejects everything else.
* The chart renders with default values and with TLS on; the manifests say what the
  chart promises (3 replicas, stable identities, headless peer Service, PDB, probes,
  non-root read-only pods, PVCs, Secret and ConfigMap mounts with TLS).
* The container's start script, run by /bin/sh with a stand-in `commitlogd`, derives
  node id = ordinal + 1 and chooses --bootstrap / --join as documented.

Schema validation of the same renders is `render_chart.py --validate` (see Makefile).
"""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import render_chart  # noqa: E402
from render_chart import RenderError, render_chart as render, render_text  # noqa: E402

CONTEXT = {
    "release": {"name": "rel", "namespace": "ns"},
    "chart": {"name": "commitlog", "version": "0.1.0", "appVersion": "0.1.0"},
}
VALUES = {"a": {"b": "x", "n": 3, "big": 1000000, "on": True, "off": False, "nil": None, "map": {"k": 1}}}


def r(text, values=VALUES):
    return render_text(text, "t.yaml", values, CONTEXT)


class RendererSubset(unittest.TestCase):
    def test_substitutes_values_and_builtins(self):
        self.assertEqual(r("{{ .Values.a.b }}-{{ .Values.a.n }}-{{ .Values.a.on }}"), "x-3-true")
        self.assertEqual(r("{{ .Release.Name }}.{{ .Release.Namespace }}"), "rel.ns")
        self.assertEqual(r("{{ .Chart.Name }}-{{ .Chart.Version }}/{{ .Chart.AppVersion }}"), "commitlog-0.1.0/0.1.0")
        self.assertEqual(r("k: {{ .Values.a.nil }}"), "k: ")

    def test_trim_markers_eat_whitespace_and_newlines_on_their_side_only(self):
        self.assertEqual(r("a  \n  {{- .Values.a.b }}  \nb"), "ax  \nb")
        self.assertEqual(r("a  {{ .Values.a.b -}}  \n  b"), "a  xb")

    def test_if_blocks_keep_or_drop_their_body(self):
        text = "env:\n  - A\n  {{- if .Values.a.on }}\n  - B\n  {{- end }}\nnext\n"
        self.assertEqual(r(text), "env:\n  - A\n  - B\nnext\n")
        text_off = text.replace("a.on", "a.off")
        self.assertEqual(r(text_off), "env:\n  - A\nnext\n")

    def test_everything_else_is_rejected(self):
        bad = [
            "{{ .Values.a.b | quote }}",
            "{{ include \"x\" . }}",
            "{{ range .Values.a }}x{{ end }}",
            "{{ with .Values.a }}x{{ end }}",
            "{{/* comment */}}",
            "{{ $x := 1 }}",
            "{{ .Values.a.missing }}",
            "{{ .Values.a.map }}",
            "{{ .Values.a.big }}",
            "{{ if .Values.a.b }}x{{ end }}",
            "{{ if .Values.a.on }}{{ if .Values.a.on }}x{{ end }}{{ end }}",
            "{{ if .Values.a.on }}x",
            "{{ end }}",
            "{{ if .Values.a.on }}x{{ else }}y{{ end }}",
            "{{-.Values.a.b }}",
            "{{ .Capabilities.KubeVersion }}",
            "a }} b",
            "{{ .Values.a.b }} {{",
        ]
        for text in bad:
            with self.subTest(text=text):
                with self.assertRaises(RenderError):
                    r(text)

    def test_errors_name_the_file_and_line(self):
        with self.assertRaisesRegex(RenderError, r"^t\.yaml:3: .*outside the supported"):
            r("a\nb\n{{ .Values.a.b | upper }}")


def by_kind(manifests):
    out = {}
    for _, doc in manifests:
        out.setdefault(doc["kind"], []).append(doc)
    return out


def env_of(container):
    return {e["name"]: e.get("value") for e in container["env"]}


class RenderedChart(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.default, cls.notes, cls.text = render(render_chart.DEFAULT_CHART, namespace="logs")
        cls.tls, _, _ = render(render_chart.DEFAULT_CHART, ["tls.enabled=true"], namespace="logs")

    def test_statefulset_has_stable_identities_and_volumes(self):
        k = by_kind(self.default)
        sts = k["StatefulSet"][0]
        headless = [s for s in k["Service"] if s["spec"].get("clusterIP") == "None"]
        self.assertEqual(len(headless), 1)
        self.assertEqual(sts["spec"]["replicas"], 3)
        self.assertEqual(sts["spec"]["serviceName"], headless[0]["metadata"]["name"])
        self.assertEqual(sts["metadata"]["name"], "commitlog")
        self.assertTrue(headless[0]["spec"]["publishNotReadyAddresses"])
        self.assertEqual(
            {(p["port"], p["protocol"]) for p in headless[0]["spec"]["ports"]},
            {(8400, "TCP"), (8401, "UDP"), (8401, "TCP"), (9400, "TCP")},
        )
        self.assertEqual(sts["spec"]["podManagementPolicy"], "Parallel")
        claim = sts["spec"]["volumeClaimTemplates"][0]
        self.assertEqual(claim["spec"]["resources"]["requests"]["storage"], "10Gi")
        self.assertIsNone(claim["spec"]["storageClassName"])  # default class
        container = sts["spec"]["template"]["spec"]["containers"][0]
        self.assertIn({"name": "data", "mountPath": "/var/lib/commitlog"}, container["volumeMounts"])
        env = env_of(container)
        self.assertEqual(env["COMMITLOGD_DATA_DIR"], "/var/lib/commitlog/data")
        self.assertEqual(env["COMMITLOGD_LISTEN"], "$(POD_IP):8400")
        self.assertEqual(env["CLOG_ADDR"], "$(POD_NAME).commitlog.$(POD_NAMESPACE).svc.cluster.local:8400")
        for c in sts["spec"]["selector"]["matchLabels"].items():
            self.assertIn(c, sts["spec"]["template"]["metadata"]["labels"].items())

    def test_pods_are_non_root_read_only_probed_and_given_time_to_stop(self):
        sts = by_kind(self.default)["StatefulSet"][0]
        pod = sts["spec"]["template"]["spec"]
        self.assertGreaterEqual(pod["terminationGracePeriodSeconds"], 30)
        self.assertTrue(pod["securityContext"]["runAsNonRoot"])
        self.assertEqual(pod["securityContext"]["runAsUser"], 10001)
        c = pod["containers"][0]
        self.assertTrue(c["securityContext"]["readOnlyRootFilesystem"])
        self.assertFalse(c["securityContext"]["allowPrivilegeEscalation"])
        self.assertEqual(c["securityContext"]["capabilities"]["drop"], ["ALL"])
        probe = c["readinessProbe"]["httpGet"]
        self.assertEqual((probe["path"], probe["port"]), ("/readyz", "metrics"))
        env = {e["name"]: e.get("value") for e in c["env"]}
        self.assertIn("COMMITLOGD_METRICS_ADDR", env)
        self.assertEqual(c["livenessProbe"]["tcpSocket"]["port"], "rpc")
        self.assertEqual(c["resources"]["requests"], {"cpu": "250m", "memory": "256Mi"})
        self.assertIn("memory", c["resources"]["limits"])

    def test_disruption_budget_allows_one_node_down(self):
        pdb = by_kind(self.default)["PodDisruptionBudget"][0]
        self.assertEqual(pdb["spec"]["maxUnavailable"], 1)
        sts = by_kind(self.default)["StatefulSet"][0]
        self.assertEqual(pdb["spec"]["selector"]["matchLabels"], sts["spec"]["selector"]["matchLabels"])

    def test_tls_off_by_default_and_fully_wired_when_on(self):
        plain = by_kind(self.default)["StatefulSet"][0]["spec"]["template"]["spec"]
        self.assertFalse(any("TLS" in n for n in env_of(plain["containers"][0])))
        self.assertEqual([v["name"] for v in plain["volumes"]], ["tmp"])
        tls = by_kind(self.tls)["StatefulSet"][0]["spec"]["template"]["spec"]
        env = env_of(tls["containers"][0])
        for flag in ("SERVER_TLS_CERT_FILE", "SERVER_TLS_KEY_FILE", "SERVER_TLS_CA_FILE",
                     "PEER_TLS_CERT_FILE", "PEER_TLS_KEY_FILE", "PEER_TLS_CA_FILE",
                     "ACL_MODEL_FILE", "ACL_POLICY_FILE", "GOSSIP_KEY_FILE"):
            self.assertTrue(env["COMMITLOGD_" + flag].startswith("/etc/commitlog/"), flag)
        self.assertEqual(env["CLOG_CA"], "/etc/commitlog/tls/ca.crt")
        volumes = {v["name"]: v for v in tls["volumes"]}
        self.assertEqual(volumes["tls"]["secret"]["secretName"], "commitlog-tls")
        self.assertEqual(volumes["tls"]["secret"]["defaultMode"], 0o440)
        self.assertEqual(volumes["acl"]["configMap"]["name"], "commitlog-acl")
        mounts = {m["name"]: m["mountPath"] for m in tls["containers"][0]["volumeMounts"]}
        self.assertEqual(mounts["tls"], "/etc/commitlog/tls")
        self.assertEqual(mounts["acl"], "/etc/commitlog/acl")

    def test_acl_configmap_holds_real_files(self):
        cm = by_kind(self.tls)["ConfigMap"][0]
        policy = cm["data"]["policy.csv"].splitlines()
        self.assertIn("p, root, *, produce", policy)
        self.assertIn("p, commitlog-peer, *, replicate", policy)
        self.assertTrue(all(line.startswith("p, ") for line in policy), policy)
        self.assertIn("[matchers]", cm["data"]["model.conf"])

    def test_release_name_and_namespace_flow_everywhere(self):
        manifests, _, _ = render(render_chart.DEFAULT_CHART, namespace="prod", release_name="clog")
        for _, doc in manifests:
            self.assertEqual(doc["metadata"]["namespace"], "prod")
            self.assertTrue(doc["metadata"]["name"].startswith("clog"))
        self.assertIn("kubectl -n logs exec commitlog-0 -- clog servers", self.notes)

    def test_set_overrides_and_rejects_unhelm_like_numbers(self):
        manifests, _, _ = render(render_chart.DEFAULT_CHART, ["replicas=5", "commitlogd.extraArgs=--retention-age 7d"])
        sts = by_kind(manifests)["StatefulSet"][0]
        self.assertEqual(sts["spec"]["replicas"], 5)
        self.assertEqual(env_of(sts["spec"]["template"]["spec"]["containers"][0])["EXTRA_ARGS"], "--retention-age 7d")
        with self.assertRaisesRegex(RenderError, "1e\\+06"):
            render(render_chart.DEFAULT_CHART, ["replicas=1000000"])


class StartScript(unittest.TestCase):
    """Runs the container command with /bin/sh and a stand-in commitlogd."""

    @classmethod
    def setUpClass(cls):
        manifests, _, _ = render(render_chart.DEFAULT_CHART, namespace="logs")
        c = by_kind(manifests)["StatefulSet"][0]["spec"]["template"]["spec"]["containers"][0]
        cls.command = c["command"]
        cls.env = env_of(c)

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="commitlog-chart-")
        bindir = os.path.join(self.tmp, "bin")
        os.makedirs(bindir)
        fake = os.path.join(bindir, "commitlogd")
        with open(fake, "w") as f:
            f.write('#!/bin/sh\nprintf "id=%s name=%s" "$COMMITLOGD_NODE_ID" "$COMMITLOGD_NODE_NAME"\n'
                    'for a in "$@"; do printf " [%s]" "$a"; done\n')
        os.chmod(fake, 0o755)
        self.path = bindir + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin")
        self.data = os.path.join(self.tmp, "data")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def run_pod(self, hostname, extra_env=None):
        env = {k: v for k, v in self.env.items() if v is not None and "$(" not in v}
        env.update(PATH=self.path, HOSTNAME=hostname, POD_NAMESPACE="logs", COMMITLOGD_DATA_DIR=self.data)
        env.update(extra_env or {})
        p = subprocess.run(self.command, env=env, capture_output=True, text=True, timeout=10)
        self.assertEqual(p.returncode, 0, p.stderr)
        return p.stdout.strip().splitlines()[-1]

    def peer(self, i):
        return "commitlog-%d.commitlog.logs.svc.cluster.local:8401" % i

    def test_pod_0_bootstraps_a_new_cluster(self):
        self.assertEqual(self.run_pod("commitlog-0"), "id=1 name=commitlog-0 [--bootstrap]")

    def test_other_pods_join_through_pod_0(self):
        self.assertEqual(self.run_pod("commitlog-2"), "id=3 name=commitlog-2 [--join] [%s]" % self.peer(0))

    def test_restarts_join_every_other_pod_and_never_bootstrap(self):
        os.makedirs(self.data)
        open(os.path.join(self.data, "node.meta"), "w").close()
        self.assertEqual(self.run_pod("commitlog-0"),
                         "id=1 name=commitlog-0 [--join] [%s,%s]" % (self.peer(1), self.peer(2)))
        self.assertEqual(self.run_pod("commitlog-1"),
                         "id=2 name=commitlog-1 [--join] [%s,%s]" % (self.peer(0), self.peer(2)))
        # A pod beyond `replicas` (kubectl scale) still lists every lower ordinal.
        self.assertEqual(self.run_pod("commitlog-4"), "id=5 name=commitlog-4 [--join] [%s]"
                         % ",".join(self.peer(i) for i in range(4)))

    def test_bootstrap_false_makes_an_empty_pod_0_join(self):
        self.assertEqual(self.run_pod("commitlog-0", {"BOOTSTRAP": "false"}),
                         "id=1 name=commitlog-0 [--join] [%s,%s]" % (self.peer(1), self.peer(2)))

    def test_extra_args_are_split_into_flags(self):
        out = self.run_pod("commitlog-1", {"EXTRA_ARGS": "--retention-age 7d"})
        self.assertTrue(out.endswith("[--retention-age] [7d]"), out)

    def test_a_hostname_without_ordinal_is_refused(self):
        env = {k: v for k, v in self.env.items() if v is not None and "$(" not in v}
        env.update(PATH=self.path, HOSTNAME="commitlog", POD_NAMESPACE="logs", COMMITLOGD_DATA_DIR=self.data)
        p = subprocess.run(self.command, env=env, capture_output=True, text=True, timeout=10)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("no ordinal", p.stderr)


if __name__ == "__main__":
    unittest.main()
