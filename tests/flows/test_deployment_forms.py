"""The forms Prefect's UI shows for each deployment in prefect.yaml: every field described, and
no two fields that say the same thing two ways."""
from __future__ import annotations

import importlib
from pathlib import Path

import yaml
from prefect.utilities.callables import parameter_schema

ROOT = Path(__file__).resolve().parents[2]


def _forms() -> dict[str, dict]:
    out = {}
    for dep in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]:
        path, name = dep["entrypoint"].split(":")
        flow = getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), name)
        out[dep["name"]] = {"schema": parameter_schema(flow).model_dump(),
                            "parameters": dep.get("parameters", {})}
    return out


def test_every_field_of_every_form_is_described():
    for dep, form in _forms().items():
        for name, prop in form["schema"]["properties"].items():
            assert prop.get("description"), f"{dep}: field {name!r} has no description"


def test_the_pipeline_form_is_one_config_and_profiles_are_a_form_of_their_own():
    forms = _forms()
    assert set(forms["pipeline"]["schema"]["properties"]) == {"cfg", "store", "storage_block"}
    assert forms["pipeline"]["parameters"] == {}  # the form holds the default profile's config
    smoke = forms["pipeline-smoke"]
    assert set(smoke["schema"]["properties"]) == {"profile", "store", "storage_block"}
    assert smoke["parameters"] == {"profile": "smoke"}


def test_the_pipeline_forms_top_level_text_fields_offer_no_none_choice():
    """An Optional field renders in Prefect's form as a choice whose None branch reads
    'Property is type "None"'; an empty text field means the same here."""
    forms = _forms()
    for dep in ("pipeline", "pipeline-smoke"):
        for name in ("store", "storage_block"):
            prop = forms[dep]["schema"]["properties"][name]
            assert prop.get("type") == "string" and "anyOf" not in prop, (dep, name, prop)
