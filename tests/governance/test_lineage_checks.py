"""Lineage shows each evaluation gate and whether the version met it; warns on tag images."""

from __future__ import annotations

import pytest

from geomlops.governance.lineage import LineageResolver


@pytest.fixture
def resolver() -> LineageResolver:
    """A resolver for checks that read only the item (no evaluation run is recorded).

    Built without its clients, as tests/governance/test_governance.py builds Governance
    for the gate rule: these checks never reach the catalog or the registry.
    """
    resolver = LineageResolver.__new__(LineageResolver)
    resolver.mlflow = None
    return resolver


def test_each_gate_is_shown_with_its_value_and_verdict(resolver: LineageResolver) -> None:
    props = {
        "geomlops:gates": {
            "val_iou_water": {"min": 0.7},
            "val_loss": {"max": 0.3},
            "val_f1": {"min": 0.5},
        },
        "geomlops:metrics": {"val_iou_water": 0.81, "val_loss": 0.45},
    }
    node = resolver._gates(props)
    assert node.kind == "gates" and node.label == "1 of 3 met"
    gates = {g.label: g for g in node.children}
    assert set(gates) == {"val_iou_water >= 0.7", "val_loss <= 0.3", "val_f1 >= 0.5"}
    assert gates["val_iou_water >= 0.7"].facts == {"value": 0.81, "met": True}
    assert gates["val_iou_water >= 0.7"].warning is None
    assert gates["val_loss <= 0.3"].facts == {"value": 0.45, "met": False}
    assert "above the gate's maximum 0.3" in str(gates["val_loss <= 0.3"].warning)
    assert gates["val_f1 >= 0.5"].facts == {"value": None, "met": False}
    assert "not measured" in str(gates["val_f1 >= 0.5"].warning)
    # Shown, not broken: the lineage itself resolves; the warnings say what is weak.
    assert node.broken() == [] and len(node.warnings()) == 2


def test_no_gates_declared_is_a_warning(resolver: LineageResolver) -> None:
    node = resolver._gates({})
    assert node.ok and node.warning == "the package declares no gates"


@pytest.mark.parametrize(
    ("image", "pinned"),
    [
        ("ghcr.io/geomlops/flood-water-s2:0.1.0", False),
        ("ghcr.io/geomlops/flood-water-s2@sha256:" + "a" * 64, True),
    ],
)
def test_an_image_named_by_tag_is_warned_about(image: str, pinned: bool) -> None:
    link = LineageResolver._image({"geomlops:image": image})
    assert link.ok and link.facts["pinned_by_digest"] is pinned
    if pinned:
        assert link.warning is None
    else:
        assert link.warning is not None and "not pinned by digest" in link.warning
