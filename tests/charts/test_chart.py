"""charts/geomlops without a cluster: render, strict schemas, equality with the CLI, consistency.

Every example values file is rendered with Helm's own engine; every object is validated
strictly against Kubernetes 1.30 and 1.35, the WorkflowTemplates against Argo v3.7.18 and
v4.1.2, the SeldonDeployments against Seldon Core v1's CRD schema. The WorkflowTemplates
and SeldonDeployments must equal what `geomlops workflows render` and `geomlops serve
manifest` produce for the same settings. Then the chart's wiring is checked statically:
images, environment variables, Secret and ConfigMap references, probe ports.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml
from chart_support import (
    CHART,
    CUSTOM_KINDS,
    EXAMPLES,
    REPO,
    by_kind,
    clean,
    example,
    merged,
    pod_spec,
    ref,
    render,
    secret_data,
    settings_for,
)
from pydantic_settings import BaseSettings

from geomlops.serving.manifest import schema_problems, seldon_deployment
from geomlops.settings import (
    InferenceSettings,
    ServingSettings,
    Settings,
    TrainingSettings,
)
from geomlops.workflows.schema import ArgoSchema
from geomlops.workflows.templates import all_templates
from geomlops.workflows.templates import render as render_template

KUBERNETES_VERSIONS = ("1.30.0", "1.35.0")
ARGO_VERSIONS = ("3.7.18", "4.1.2")
PROFILES = {path.stem: example(path.stem) for path in EXAMPLES}
# Values that move every setting the WorkflowTemplates and SeldonDeployments depend on.
VARIANTS: dict[str, dict[str, Any]] = {
    **PROFILES,
    "defaults": {},
    "moved": {
        "image": {"repository": "registry.local/mirror/geomlops", "tag": "9.9.9"},
        "platformSecret": {"name": "other-platform"},
        "objectStore": {"buckets": {"mlflow": "ml-artifacts"}},
        "workflows": {
            "serviceAccount": {"name": "runner"},
            "training": {"gpus": 0},
            "inference": {"gpus": 3},
        },
        "gpu": {"resource": "amd.com/gpu", "tolerations": [], "nodeSelector": {"gpu": "mi300"}},
        "serving": {
            "models": [{"name": "burn_scars", "version": 7}],
            "gpus": 2,
            "replicas": 3,
            "minAreaM2": 0.25,
            "simplifyToleranceM": 3,
            "skipValues": "0,255",
        },
    },
}


def _objects(name: str) -> list[dict[str, Any]]:
    return render(VARIANTS[name])


def test_every_example_profile_renders() -> None:
    assert {p.stem for p in EXAMPLES} == {"laptop", "production", "gpu"}
    for name in PROFILES:
        kinds = {o["kind"] for o in _objects(name)}
        assert {"Deployment", "Service", "Job", "Secret", "WorkflowTemplate"} <= kinds, name


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("profile", sorted(VARIANTS))
def test_objects_validate_strictly(profile: str, version: str) -> None:
    """Core objects against Kubernetes' schemas (unknown fields refused)."""
    problems = []
    for obj in _objects(profile):
        if obj["kind"] in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(clean(obj), version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{ref(obj)} ({obj['_source']}): {exc}")
    assert problems == []


@pytest.mark.parametrize("profile", sorted(VARIANTS))
def test_custom_resources_validate(profile: str) -> None:
    objects = _objects(profile)
    argo = ArgoSchema()
    problems = []
    for obj in objects:
        if obj["kind"] == "WorkflowTemplate":
            for version in ARGO_VERSIONS:
                problems += [
                    f"{ref(obj)} [Argo {version}] {p}" for p in argo.problems(clean(obj), version)
                ]
        elif obj["kind"] == "SeldonDeployment":
            problems += [f"{ref(obj)} {p}" for p in schema_problems(clean(obj))]
    assert problems == []
    assert {o["kind"] for o in objects} >= {"WorkflowTemplate"}


@pytest.mark.parametrize("profile", sorted(VARIANTS))
def test_workflow_templates_equal_geomlops_render(profile: str) -> None:
    settings = settings_for(VARIANTS[profile])
    expected = {name: render_template(t) for name, t in all_templates(settings).items()}
    chart = {name: clean(o) for name, o in by_kind(_objects(profile), "WorkflowTemplate").items()}
    assert chart.keys() == expected.keys()
    for name, manifest in expected.items():
        assert chart[name] == manifest, f"{name} differs from `geomlops workflows render`"


@pytest.mark.parametrize("profile", sorted(VARIANTS))
def test_seldon_deployments_equal_serve_manifest(profile: str) -> None:
    values = merged(VARIANTS[profile])
    settings = settings_for(VARIANTS[profile])
    chart = by_kind(_objects(profile), "SeldonDeployment")
    assert len(chart) == len(values["serving"]["models"])
    for model in values["serving"]["models"]:
        version = model.get("version")
        expected = seldon_deployment(
            model["name"],
            version=None if version in (None, "") else str(version),
            settings=settings,
        )
        assert clean(chart[expected["metadata"]["name"]]) == expected


def test_base_workflow_files_are_the_default_render() -> None:
    """files/workflows is `geomlops workflows render --out charts/geomlops/files/workflows`."""
    defaults = Settings.model_construct(
        training=TrainingSettings.model_construct(), inference=InferenceSettings.model_construct()
    )
    for name, template in all_templates(defaults).items():
        path = CHART / "files" / "workflows" / f"{name}.yaml"
        text = yaml.safe_dump(render_template(template), sort_keys=False)
        if os.environ.get("GEOMLOPS_REGENERATE_GOLDEN") == "1":
            assert not os.environ.get("CI"), "never regenerated in CI"
            path.write_text(text)
        assert path.read_text() == text, (
            f"{path} is stale: run `GEOMLOPS_REGENERATE_GOLDEN=1 pytest tests/charts` or "
            "`geomlops workflows render --out charts/geomlops/files/workflows` with no "
            "GEOMLOPS_* variables set"
        )


def test_chart_defaults_are_the_settings_defaults() -> None:
    """One source of truth: the chart's defaults are the settings' defaults."""
    values = merged({})
    training, serving = TrainingSettings.model_construct(), ServingSettings.model_construct()
    assert f"{values['image']['repository']}:{values['image']['tag']}" == training.platform_image
    assert values["platformSecret"]["name"] == training.platform_secret
    assert values["workflows"]["serviceAccount"]["name"] == training.service_account
    assert values["gpu"]["resource"] == training.gpu_resource
    assert values["gpu"]["tolerations"] == training.gpu_tolerations
    assert values["gpu"]["nodeSelector"] == training.gpu_node_selector
    assert values["workflows"]["training"]["gpus"] == training.gpus
    assert values["workflows"]["inference"]["gpus"] == InferenceSettings.model_construct().gpus
    assert values["serving"]["modelImage"] == serving.model_image
    assert values["serving"]["transformerImage"] == serving.transformer_image
    assert values["serving"]["replicas"] == serving.replicas
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == values["image"]["tag"]  # the release's platform image
    # The defaults the WorkflowTemplate template rewrites are the default render's.
    text = (CHART / "templates" / "workflows.yaml").read_text()
    assert f'"image" "{training.platform_image}"' in text
    assert f'"secret" "{training.platform_secret}"' in text
    assert f'"gpu" "{training.gpu_resource}"' in text


def test_the_default_platform_image_is_built_here() -> None:
    """The WorkflowTemplates' default image is the one the root Dockerfile builds (CI tags it)."""
    dockerfile = (REPO / "Dockerfile").read_text()
    image = TrainingSettings.model_construct().platform_image
    repository = image.rsplit(":", 1)[0]
    assert f"org.opencontainers.image.ref.name={image}" in dockerfile.replace('"', "")
    assert repository == merged({})["image"]["repository"]


def test_gpus_reach_exactly_the_gpu_steps() -> None:
    objects = render(PROFILES["gpu"])
    gpu_pods = set()
    for wt in by_kind(objects, "WorkflowTemplate").values():
        for t in wt["spec"]["templates"]:
            limits = (t.get("container") or {}).get("resources", {}).get("limits", {})
            if "nvidia.com/gpu" in limits:
                gpu_pods.add(t["name"])
                assert t["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L4"}
                assert len(t["tolerations"]) == 2
            else:
                assert "tolerations" not in t and "nodeSelector" not in t, t["name"]
    assert gpu_pods == {"train", "evaluate", "predict"}
    for sd in by_kind(objects, "SeldonDeployment").values():
        model, transformer = sd["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"]
        assert model["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert "nvidia.com/gpu" not in transformer["resources"]["limits"]
    for obj in objects:  # the platform's own services never ask for a GPU
        spec = pod_spec(obj)
        for c in (spec or {}).get("containers", []):
            assert "nvidia.com/gpu" not in str(c.get("resources")), ref(obj)


def test_governance_holds_after_a_resume_from_the_argo_ui() -> None:
    """Resuming `approve` (the Argo UI's button) only lets `approved` or `rejected` run, each
    of which checks the decision recorded by `geomlops promote`/`reject`
    (tests/workflows/test_train_decisions.py runs them); plain resume means `approved`."""
    wt = by_kind(render(PROFILES["laptop"]), "WorkflowTemplate")["geomlops-train"]
    templates = {t["name"]: t for t in wt["spec"]["templates"]}
    dag = templates["main"]["dag"]["tasks"]
    after_approve = [t for t in dag if "approve" in re.split(r"[ &|.]+", t.get("depends", ""))]
    assert "suspend" in templates["approve"]
    (decision,) = templates["approve"]["outputs"]["parameters"]
    assert decision["valueFrom"] == {"supplied": {}, "default": "approved"}
    assert [t["name"] for t in after_approve] == ["approved", "rejected"]
    for step in ("approved", "rejected"):
        assert templates[step]["container"]["args"][:2] == ["train-step", step]
        assert "retryStrategy" not in templates[step]


def test_workflows_run_as_their_own_account_with_argos_minimum() -> None:
    objects = render(PROFILES["laptop"])
    for wt in by_kind(objects, "WorkflowTemplate").values():
        assert wt["spec"]["serviceAccountName"] == "geomlops-workflow"
    assert "geomlops-workflow" in by_kind(objects, "ServiceAccount")
    (role,) = by_kind(objects, "Role").values()
    assert role["rules"] == [
        {
            "apiGroups": ["argoproj.io"],
            "resources": ["workflowtaskresults"],
            "verbs": ["create", "patch"],
        }
    ]
    (binding,) = by_kind(objects, "RoleBinding").values()
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "geomlops-workflow", "namespace": "geomlops"}
    ]


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"postgresql": {"mode": "externl"}}, "/postgresql/mode"),
        ({"postgresql": {"mode": "external"}}, "/postgresql/external/existingSecret"),
        ({"objectStore": {"mode": "external"}}, "/objectStore/external"),
        ({"objectStore": {"buckets": {"mlflow": "Not_A_Bucket"}}}, "/objectStore/buckets/mlflow"),
        ({"workflows": {"training": {"gpus": -1}}}, "/workflows/training/gpus"),
        ({"stac": {"replicas": "two"}}, "/stac/replicas"),
        ({"stac": {"prot": 8080}}, "/stac"),
        ({"serving": {"models": [{"version": "1"}]}}, "/serving/models/0"),
        ({"auth": {"adminApiKey": "short"}}, "/auth/adminApiKey"),
    ],
)
def test_values_schema_refuses_bad_values(values: dict[str, Any], named: str) -> None:
    with pytest.raises(helm_python.HelmError) as info:
        render(values)
    assert named in str(info.value)


def test_switching_one_backend_leaves_the_others_alone() -> None:
    def workloads(values: dict[str, Any]) -> dict[str, Any]:
        return {ref(o): o for o in render(values) if o["kind"] in ("StatefulSet", "Deployment")}

    bundled = workloads({})
    external_db = workloads(
        {"postgresql": {"mode": "external", "external": {"existingSecret": "db"}}}
    )
    minio = workloads({"objectStore": {"mode": "minio"}})
    assert set(bundled) - set(external_db) == {"StatefulSet/geomlops-postgresql"}
    assert bundled["StatefulSet/geomlops-s3"] == external_db["StatefulSet/geomlops-s3"]
    assert set(minio) == set(bundled)
    assert bundled["StatefulSet/geomlops-postgresql"] == minio["StatefulSet/geomlops-postgresql"]
    assert (
        "minio"
        in minio["StatefulSet/geomlops-s3"]["spec"]["template"]["spec"]["containers"][0]["image"]
    )


# --- consistency --------------------------------------------------------------------------


def _settings_env_names() -> set[str]:
    """Every environment variable the settings read, introspected from the settings classes."""
    names = set()
    for field in Settings.model_fields.values():
        cls = field.annotation
        assert isinstance(cls, type) and issubclass(cls, BaseSettings)
        prefix = cls.model_config.get("env_prefix", "")
        for name, sub in cls.model_fields.items():
            alias = sub.validation_alias
            if alias is not None and hasattr(alias, "choices"):
                names |= {str(c).upper() for c in alias.choices}
            else:
                names.add(f"{prefix}{name}".upper())
    return names


def _platform_containers(obj: dict[str, Any], image: str) -> list[dict[str, Any]]:
    spec = pod_spec(obj)
    if spec is None:
        return []
    return [
        c
        for c in spec.get("containers", []) + spec.get("initContainers", [])
        if c["image"] == image
    ]


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_env_variable_is_a_settings_field(profile: str) -> None:
    values = merged(PROFILES[profile])
    image = f"{values['image']['repository']}:{values['image']['tag']}"
    known = _settings_env_names()
    problems = []
    for obj in render(PROFILES[profile]):
        for container in _platform_containers(obj, image):
            for i, env in enumerate(container.get("env", [])):
                if env["name"] not in known:
                    problems.append(
                        f"{ref(obj)} container {container['name']} env[{i}] {env['name']}: "
                        "not a field of geomlops.settings"
                    )
    for wt in [o for o in render(PROFILES[profile]) if o["kind"] == "WorkflowTemplate"]:
        for t in wt["spec"]["templates"]:
            for env in (t.get("container") or {}).get("env", []):
                if env["name"] not in known:
                    problems.append(f"{ref(wt)} template {t['name']} env {env['name']}")
    assert problems == []


def _images(objects: list[dict[str, Any]]) -> set[str]:
    images = set()
    for obj in objects:
        spec = pod_spec(obj)
        if spec is not None:
            images |= {
                c["image"] for c in spec.get("containers", []) + spec.get("initContainers", [])
            }
        if obj["kind"] == "SeldonDeployment":
            for p in obj["spec"]["predictors"]:
                images |= {c["image"] for s in p["componentSpecs"] for c in s["spec"]["containers"]}
        if obj["kind"] == "WorkflowTemplate":
            images |= {
                t["container"]["image"]
                for t in obj["spec"]["templates"]
                if "container" in t and "{{" not in t["container"]["image"]
            }
    return images


def _built_here() -> dict[str, Path]:
    """Images this repository builds: the platform image and the serving images."""
    serving = ServingSettings.model_construct()
    return {
        TrainingSettings.model_construct().platform_image: REPO / "Dockerfile",
        serving.model_image: REPO / "serving" / "Dockerfile",
        serving.transformer_image: REPO / "transformers" / "Dockerfile",
    }


def test_every_image_is_built_here_or_pinned_upstream() -> None:
    built = _built_here()
    for path in built.values():
        assert path.is_file(), path
    problems = []
    for name in PROFILES:
        for image in _images(render(PROFILES[name])):
            if image in built:
                continue
            tag = image.rpartition(":")[2]
            if image.startswith("ghcr.io/geomlops/"):
                problems.append(f"{name}: {image} is ours but no Dockerfile here builds it")
            elif not tag or tag == "latest" or "/" in tag:
                problems.append(f"{name}: upstream image {image} is not pinned to a version")
    assert problems == []


def test_image_list_for_mirroring_matches_the_chart() -> None:
    """charts/geomlops/images.txt: every image any profile or option can pull."""
    listed = (CHART / "images.txt").read_text().split()
    objects: list[dict[str, Any]] = []
    for values in [
        *PROFILES.values(),
        {},
        {"objectStore": {"mode": "minio"}},
        {"serving": {"models": [{"name": "m"}]}},
    ]:
        objects += render(values)
    expected = {i for i in _images(objects) if "{{" not in i}
    if os.environ.get("GEOMLOPS_REGENERATE_GOLDEN") == "1":
        assert not os.environ.get("CI"), "never regenerated in CI"
        (CHART / "images.txt").write_text("\n".join(sorted(expected)) + "\n")
        listed = sorted(expected)
    assert sorted(listed) == sorted(expected), (
        "charts/geomlops/images.txt is stale: regenerate with GEOMLOPS_REGENERATE_GOLDEN=1"
    )


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_secret_and_configmap_reference_resolves(profile: str) -> None:
    """A key the chart creates, or one of the documented existing-secret contracts."""
    values = merged(PROFILES[profile])
    objects = render(PROFILES[profile])
    keys = {name: set(secret_data(s)) for name, s in by_kind(objects, "Secret").items()}
    configmaps = {
        name: set(c.get("data") or {}) for name, c in by_kind(objects, "ConfigMap").items()
    }
    db, s3 = values["postgresql"]["external"], values["objectStore"]["external"]
    contracts = {  # README "Deploy to Kubernetes": what an existing Secret must hold
        db["existingSecret"]: {db["dsnKey"]},
        s3["existingSecret"]: {s3["accessKeyKey"], s3["secretKeyKey"]},
    }
    platform = values["platformSecret"]["name"]
    platform_contract = {
        "stac-url", "api-key", "mlflow-tracking-uri", "mlflow-password", "s3-endpoint-url",
        "s3-access-key", "s3-secret-key", "datasets-git-remote", "db-dsn",
    }  # fmt: skip
    problems = []

    def check(where: str, kind: str, name: str, key: str, optional: bool) -> None:
        if kind == "configMapKeyRef":
            if key not in configmaps.get(name, set()):
                problems.append(f"{where}: ConfigMap {name} has no key {key}")
            return
        if name == platform:
            if key not in platform_contract:
                problems.append(f"{where}: {key} is not a key of the platform Secret")
            elif not optional and key not in keys.get(name, set()):
                problems.append(f"{where}: required key {key} missing from Secret {name}")
            return
        if name in keys:
            if key not in keys[name]:
                problems.append(f"{where}: Secret {name} has no key {key}")
        elif name in contracts and name:
            if key not in contracts[name]:
                problems.append(f"{where}: {key} is not in the existing-secret contract")
        else:
            problems.append(f"{where}: Secret {name} is neither the chart's nor documented")

    for obj in objects:
        containers = []
        spec = pod_spec(obj)
        if spec is not None:
            containers = spec.get("containers", []) + spec.get("initContainers", [])
            for volume in spec.get("volumes", []):
                if "secret" in volume:
                    for item in volume["secret"].get("items", []):
                        check(f"{ref(obj)} volume {volume['name']}", "secretKeyRef",
                              volume["secret"]["secretName"], item["key"], False)  # fmt: skip
        if obj["kind"] == "WorkflowTemplate":
            containers = [
                {**t["container"], "name": t["name"]}
                for t in obj["spec"]["templates"]
                if "container" in t
            ]
        for c in containers:
            for env in c.get("env", []):
                source = env.get("valueFrom") or {}
                for kind in ("secretKeyRef", "configMapKeyRef"):
                    if kind in source:
                        r = source[kind]
                        where = f"{ref(obj)} container {c['name']} env {env['name']}"
                        check(where, kind, r["name"], r["key"], r.get("optional", False))
    assert problems == []
    # The platform Secret holds what workflow pods need, whatever the profile.
    if not values["platformSecret"]["existingSecret"]:
        assert {"stac-url", "mlflow-tracking-uri", "s3-endpoint-url", "api-key"} <= keys[platform]


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_probe_targets_a_port_the_container_listens_on(profile: str) -> None:
    problems = []
    for obj in render(PROFILES[profile]):
        spec = pod_spec(obj)
        for c in (spec or {}).get("containers", []):
            ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                http = (c.get(probe) or {}).get("httpGet")
                if http is None:
                    continue
                port = http["port"]
                if port not in ports and port not in ports.values():
                    problems.append(f"{ref(obj)} container {c['name']} {probe}: port {port}")
            if obj["kind"] in ("Deployment", "StatefulSet"):
                assert c.get("readinessProbe") and c.get("livenessProbe"), ref(obj)
    # Every Service's targetPort is a named port of the pods it selects.
    objects = render(PROFILES[profile])
    for svc in by_kind(objects, "Service").values():
        selector = svc["spec"]["selector"]
        pods = [
            pod_spec(o)
            for o in objects
            if o["kind"] in ("Deployment", "StatefulSet")
            and selector.items() <= o["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(pods) == 1, ref(svc)
        names = {p.get("name") for c in pods[0]["containers"] for p in c.get("ports", [])}
        for port in svc["spec"]["ports"]:
            if port["targetPort"] not in names:
                problems.append(f"{ref(svc)} targetPort {port['targetPort']}")
    assert problems == []


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_pods_run_as_non_root_with_limits(profile: str) -> None:
    for obj in render(PROFILES[profile]):
        spec = pod_spec(obj)
        if spec is None:
            continue
        assert spec["securityContext"]["runAsNonRoot"] is True, ref(obj)
        assert spec.get("automountServiceAccountToken") is False, ref(obj)
        for c in spec["containers"]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, ref(obj)
            assert c["resources"]["limits"]["memory"], ref(obj)


def test_network_policies_admit_only_the_platform_to_the_data() -> None:
    objects = render({"networkPolicies": {"enabled": True}})
    policies = by_kind(objects, "NetworkPolicy")
    assert set(policies) == {
        "geomlops-postgresql", "geomlops-s3", "geomlops-stac", "geomlops-mlflow",
        "geomlops-gateway",
    }  # fmt: skip
    for name in ("geomlops-postgresql", "geomlops-s3"):
        (rule,) = policies[name]["spec"]["ingress"]
        assert rule["from"], name  # never open to any pod
    for name in ("geomlops-stac", "geomlops-mlflow", "geomlops-gateway"):
        (rule,) = policies[name]["spec"]["ingress"]
        assert "from" not in rule and rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert by_kind(render({}), "NetworkPolicy") == {}
    # The gateway reads S3 (tiles): its pods are the platform's, admitted to the data.
    gateway = by_kind(render({}), "Deployment")["geomlops-gateway"]
    assert gateway["spec"]["template"]["metadata"]["labels"]["geomlops.io/platform"] == "true"


def test_helm_lint_passes_for_every_profile() -> None:
    for path in EXAMPLES:
        report = helm_python.lint(str(CHART), example(path.stem), strict=True, namespace="geomlops")
        errors = [m for m in report["messages"] if m["severity"] >= 2]
        assert errors == [], path.name


def test_packaged_chart_holds_the_workflow_files(tmp_path: Path) -> None:
    archive = helm_python.package(str(CHART), destination=str(tmp_path))
    import tarfile

    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert "geomlops/files/workflows/geomlops-train.yaml" in names
    assert "geomlops/values.schema.json" in names
    assert not any("/examples/" in n for n in names)


def test_a_read_only_root_needs_the_scratch_volume(tmp_path: Path) -> None:
    """The image's HOME and GEOMLOPS_HOME (/tmp) must be on a volume: the root is read-only."""
    from wiring import LocalCluster

    objects = render(PROFILES["laptop"])
    stac = by_kind(objects, "Deployment")["geomlops-stac"]
    (container,) = stac["spec"]["template"]["spec"]["containers"]
    container["volumeMounts"] = []
    cluster = LocalCluster(objects, container["image"], {}, tmp_path)
    assert cluster.start(stac, container) is None
    assert cluster.problems == [
        "Deployment/geomlops-stac container stac: the image sets HOME=/tmp, on no writable "
        "volume of the container (its root filesystem is read-only)"
    ]


def test_the_gateway_is_a_service_of_the_chart_with_its_basemap_and_argo() -> None:
    """On by default, off on request; the basemap ConfigMap and Argo's token reach it."""
    values = {
        "gateway": {
            "basemapConfigMap": "world",
            "argo": {"server": "https://argo-server.argo:2746", "tokenSecret": {"name": "tok"}},
        },
        "ingress": {"enabled": True, "gatewayHost": "map.example.org"},
    }
    objects = render(values)
    deployment = by_kind(objects, "Deployment")["geomlops-gateway"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["GEOMLOPS_ARGO_SERVER"]["value"] == "https://argo-server.argo:2746"
    assert env["GEOMLOPS_ARGO_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "tok",
        "key": "token",
    }
    assert env["GEOMLOPS_STAC_URL"]["value"] == "http://geomlops-stac:8080"
    assert env["GEOMLOPS_GATEWAY_VECTOR_DIR"]["value"] == "/etc/geomlops/vector"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {"tmp": "/tmp", "basemap": "/etc/geomlops/vector"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["basemap"]["configMap"]["name"] == "world"
    assert by_kind(objects, "Service")["geomlops-gateway"]["spec"]["ports"][0]["port"] == 8090
    (rule,) = [
        r for r in by_kind(objects, "Ingress")["geomlops"]["spec"]["rules"]
        if r["host"] == "map.example.org"
    ]  # fmt: skip
    assert rule["http"]["paths"][0]["backend"]["service"]["name"] == "geomlops-gateway"
    plain = by_kind(render({}), "Deployment")["geomlops-gateway"]["spec"]["template"]["spec"]
    assert "GEOMLOPS_GATEWAY_VECTOR_DIR" not in {e["name"] for e in plain["containers"][0]["env"]}
    assert "GEOMLOPS_ARGO_TOKEN" not in {e["name"] for e in plain["containers"][0]["env"]}
    off = render({"gateway": {"enabled": False}})
    assert "geomlops-gateway" not in by_kind(off, "Deployment")
    assert "geomlops-gateway" not in by_kind(off, "Service")
