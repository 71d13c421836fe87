"""Parameters declared once (issue 21): the models, the notebooks' parameters cells and the CLI's
options agree on every field and default; one run-id type; every problem names the field's path."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pydantic
import pytest

from kdlib import options as declared
from kdlib.cli import build_parser, main
from kdlib.errors import ConfigError, ParametersError
from kdlib.experiments.microbench.spec import SuiteParams
from kdlib.experiments.trace.params import TraceParams
from kdlib.params import problems_of

REPO = Path(__file__).resolve().parents[2]
#: notebook → (its model, the CLI command whose options are the model's fields)
EXPERIMENTS = {"microbench": (SuiteParams, ["run"]), "trace": (TraceParams, ["trace", "run"])}


def parameters_cell(notebook: str) -> str:
    cells = json.loads((REPO / "notebooks" / f"{notebook}.ipynb").read_text(encoding="utf-8"))["cells"]
    [cell] = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    return "".join(cell["source"])


def notebook_defaults(notebook: str) -> dict[str, Any]:
    """The parameters cell's assignments, read as papermill reads them (``name: type = default``)."""
    found = {}
    for node in ast.parse(parameters_cell(notebook)).body:
        assert isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name), ast.dump(node)
        found[node.target.id] = ast.literal_eval(node.value)
    return found


def plain(value: Any) -> Any:
    """A default as a notebook or the CLI writes it: lists for tuples, text for paths."""
    if isinstance(value, (tuple, list)):
        return [plain(v) for v in value]
    return str(value) if isinstance(value, Path) else value


@pytest.mark.parametrize("notebook", EXPERIMENTS)
def test_the_notebook_the_cli_and_the_model_agree_on_every_default(notebook):
    model, command = EXPERIMENTS[notebook]
    defaults = declared.defaults(model)
    in_notebook = notebook_defaults(notebook)
    assert list(in_notebook) == list(defaults)  # every field, in the model's order
    assert {name: plain(v) for name, v in in_notebook.items()} == {name: plain(v) for name, v in defaults.items()}
    args = build_parser().parse_args([*command, "--run-id", "x"])
    for name, default in defaults.items():
        if name == "run_id" or declared.is_notebook_only(model, name):
            continue
        assert plain(getattr(args, name)) == plain(default), name
    # ... so the CLI with no option and the notebook as shipped make the same parameters.
    assert declared.from_options(model, args) == model.from_notebook({**in_notebook, "run_id": "x"})


@pytest.mark.parametrize("notebook", EXPERIMENTS)
def test_the_parameters_cell_is_the_models_declaration(notebook):
    """Its comments are the fields' documentation (papermill --help-notebook shows them)."""
    model = EXPERIMENTS[notebook][0]
    assert parameters_cell(notebook) == declared.parameters_cell(model), (
        f"write notebooks/{notebook}.ipynb's parameters cell from kdlib.params.parameters_cell({model.__name__})")


def test_real_nodes_defaults_to_what_the_readme_documents():
    assert SuiteParams.model_fields["real_nodes"].default == 2
    assert "`real_nodes` parameter (default 2" in (REPO / "README.md").read_text(encoding="utf-8")


def test_one_run_id_type_for_every_experiment():
    assert SuiteParams.model_fields["run_id"].metadata == TraceParams.model_fields["run_id"].metadata
    for model in (SuiteParams, TraceParams):
        assert problems_of(model, run_id="..") == ["run_id: '..' must be letters, digits, '.', '_' or '-' (no '/', "
                                                   "spaces or newlines), starting with a letter or digit"]
        assert "-r run_id 2024" in problems_of(model, run_id=2024)[0]


def test_problems_name_the_field_path_one_line_each():
    with pytest.raises(ParametersError) as caught:
        TraceParams(run_id="x", timeouts={"Dr/K8s+": "soon"}, systems=["Dr/K8s+", "Dr/X"], minutes=0)
    assert isinstance(caught.value, ConfigError)
    assert caught.value.problems == [
        "minutes: 0 must be a whole number ≥ 1",
        "systems[1]: unknown system 'Dr/X' (known: Kn/K8s, Kn/Kd, Dirigent, Dr/K8s+, Dr/K8s+ (as shipped), Dr/Kd+)",
        "timeouts['Dr/K8s+']: 'soon' must be a finite number of seconds > 0"]
    assert str(caught.value) == "invalid trace parameters:\n  " + "\n  ".join(caught.value.problems)
    assert problems_of(SuiteParams, run_id="x", scale_pods=[5, "10"], reapeats=2) == [
        "scale_pods[1]: '10' is not a positive integer",
        "reapeats: unknown field; known: " + ", ".join(SuiteParams.model_fields)]


def test_a_check_across_fields_is_reported_with_the_others():
    assert problems_of(TraceParams, run_id="x", minutes=5, warmup_minutes=5, seed=-1) == [
        "warmup_minutes: 5 must be less than minutes (5)", "seed: -1 must be a whole number ≥ 0"]


def test_an_instance_is_always_valid():
    params = SuiteParams(run_id="x")
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        params.nodes = 0
    with pytest.raises(ParametersError, match="nodes: 0 must be"):
        params.replaced(nodes=0)
    assert params.replaced(nodes=3).nodes == 3


def test_the_cli_reads_the_options_the_model_declares():
    args = build_parser().parse_args(["run", "--run-id", "2024", "--bench", "scale-pods", "--scale-pods", "5,10",
                                      "--baseline", "k8s+", "--baseline", "k8s+u", "--settle", "0.5",
                                      "--real-nodes", "0", "--run-timeout", "none", "--artifact-scales"])
    assert (args.run_id, args.benches, args.scale_pods, args.baselines, args.settle_s, args.real_nodes,
            args.run_timeout_s, args.artifact_scales) == ("2024", ["scale-pods"], [5, 10], ["k8s+", "k8s+u"], 0.5,
                                                           0, None, True)
    trace = build_parser().parse_args(["trace", "run", "--run-id", "t", "--system", "Dr/K8s+", "--timeouts",
                                       "Dr/K8s+=5", "--no-original-extra", "--functions", "20"])
    made = declared.from_options(TraceParams, trace)
    assert (made.systems, made.timeouts, made.original_extra, made.functions) == (("Dr/K8s+",), {"Dr/K8s+": 5.0},
                                                                                  False, 20)


def test_the_cli_names_a_bad_option_value_before_anything_runs(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("KDLIB_RESULTS_DIR", str(tmp_path))
    assert main(["run", "--run-id", "x", "--nodes", "0", "--scales", "scale-pods=0"]) == 1
    err = capsys.readouterr().err
    assert "scale_pods[0]: 0 is not a positive integer" in err and "nodes: 0 must be a whole number ≥ 1" in err
    assert not any(tmp_path.iterdir())
