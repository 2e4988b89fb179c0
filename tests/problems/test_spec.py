"""Problem specs in-process: FILE.py:ATTR and MODULE:ATTR, -o options, the stored source and its hash check.

The oracle for a loaded problem is the same factory called directly with the converted options: the data
must be the same tensors and the model the same shapes.
"""

from __future__ import annotations

import sys

import pytest
import torch

import gradtune
from gradtune.errors import UsageError, is_user_code
from gradtune.problems.spec import ProblemSource, load_source, load_spec
from gradtune.problems.spec_options import bind_options, parse_option_pairs
from user_problem_files import PROBLEM_FILE, forget_imports, oracle_problem, sha256, write_package, write_problem


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    """A directory for the user's files; what loading them added to sys.path and sys.modules is undone."""
    monkeypatch.chdir(tmp_path)
    before = list(sys.path)
    yield tmp_path
    forget_imports(tmp_path, before)


def _same_problem(a: gradtune.Problem, b: gradtune.Problem) -> None:
    for split in ("train", "valid"):
        for got, want in zip(getattr(a, split), getattr(b, split)):
            assert torch.equal(got, want)
    assert [p.shape for p in a.build_model().parameters()] == [p.shape for p in b.build_model().parameters()]


def test_file_spec_builds_the_factorys_problem_with_converted_options(user_dir):
    path = write_problem(user_dir)
    problem = load_spec("tasks.py:make_problem", {"n": "120", "width": "8"})

    _same_problem(problem, oracle_problem(120, 8))
    assert problem.name == "tasks.make_problem"  # Problem's default name replaced by the spec's
    source = problem.source
    assert (source.spec, source.file, source.attr) == ("tasks.py:make_problem", str(path.resolve()), "make_problem")
    assert source.options == {"n": "120", "width": "8"}  # as given: a worker converts them the same way
    assert source.sha256 == sha256(path)


def test_a_problem_attribute_and_a_dotted_module_spec(user_dir):
    write_problem(user_dir)
    built = load_spec("tasks.py:built")
    _same_problem(built, oracle_problem(40, 16))

    package_file = write_package(user_dir / "lib")
    sys.path.insert(0, str(user_dir / "lib"))
    problem = gradtune.get_problem("userpkg.tasks:make_problem", n=60)  # typed values pass as they are
    _same_problem(problem, oracle_problem(60, 16))
    assert problem.name == "userpkg.tasks.make_problem"
    assert problem.source.file == str(package_file.resolve())
    assert problem.source.sha256 == sha256(package_file)


def test_load_source_rebuilds_the_same_problem_and_refuses_a_changed_file(user_dir):
    path = write_problem(user_dir)
    stored = ProblemSource.from_metadata(load_spec("tasks.py:make_problem", {"n": "80"}).source.to_metadata())

    _same_problem(load_source(stored, study="s"), oracle_problem(80, 16))

    path.write_text(PROBLEM_FILE + "\nraise RuntimeError('a changed file must not be imported')\n")
    with pytest.raises(UsageError) as refused:
        load_source(stored, study="s")
    message = str(refused.value)
    assert f"'{path.resolve()}' changed since the study 's' was made" in message
    assert "\n" not in message

    path.unlink()
    with pytest.raises(UsageError, match="must exist on this machine"):
        load_source(stored)


def test_errors_of_the_users_file_propagate_unchanged_and_marked(user_dir):
    (user_dir / "broken.py").write_text("import torch\nraise KeyError('their bug')\n")
    with pytest.raises(KeyError, match="their bug") as raised:
        load_spec("broken.py:anything")
    assert is_user_code(raised.value)
    assert "broken" not in sys.modules  # a module that failed to import is not left half-made

    (user_dir / "factory.py").write_text("def make(n=1):\n    return [][n]\n")
    with pytest.raises(IndexError) as raised:
        load_spec("factory.py:make")
    assert is_user_code(raised.value)


def test_a_usage_error_inside_the_factory_stays_a_usage_error(user_dir):
    (user_dir / "bad_problem.py").write_text(
        "import torch, gradtune\n"
        "def make():\n"
        "    return gradtune.Problem(lambda: torch.nn.Linear(2, 2), train=(torch.zeros(3, 2), torch.zeros(2)),\n"
        "                            valid=(torch.zeros(2, 2), torch.zeros(2)))\n")
    with pytest.raises(UsageError, match="as many targets as inputs") as raised:
        load_spec("bad_problem.py:make")
    assert not is_user_code(raised.value)


@pytest.mark.parametrize(("options", "expected"), [
    ({"n": "7"}, {"n": 7}),                                # int default
    ({"lr": "1"}, {"lr": 1.0}),                            # float default: 1 is 1.0
    ({"name": "007"}, {"name": "007"}),                    # str default: the text as it is
    ({"flag": "no"}, {"flag": False}),                     # bool default
    ({"flag": "True"}, {"flag": True}),
    ({"count": "12"}, {"count": 12}),                      # no default: the annotation's type
    ({"sizes": "[64, 32]"}, {"sizes": [64, 32]}),          # default None: a JSON literal
    ({"sizes": "null"}, {"sizes": None}),
    ({"sizes": "wide"}, {"sizes": "wide"}),                # not a literal: the text
    ({"count": "1", "extra": "2.5"}, None),                # refused below: no **kwargs
])
def test_option_values_are_converted_by_the_parameters_type(options, expected):
    def factory(count: int, n=1, lr=0.1, name="x", flag=True, sizes=None):
        return None

    if expected is None:
        with pytest.raises(UsageError, match=r"The '-o' parameter must name a parameter of 'f': count, n, lr, "
                                             r"name, flag, sizes\. Got 'extra'\."):
            bind_options(factory, options, "'f'")
        return
    assert bind_options(factory, {"count": "1", **options}, "'f'") == {"count": 1, **expected}


def test_kwargs_take_any_option_as_a_literal_and_required_parameters_must_be_given():
    assert bind_options(lambda **kw: None, {"a": "3", "b": "x"}, "'f'") == {"a": 3, "b": "x"}
    with pytest.raises(UsageError, match=r"required parameter\(s\) path, n \(-o path=VALUE -o n=VALUE\)"):
        bind_options(lambda path, n, m=2: None, {"m": "3"}, "'f'")
    with pytest.raises(UsageError, match=r"The '-o n' option must be an integer \(its default is 1\)\. Got '1\.5'"):
        bind_options(lambda n=1: None, {"n": "1.5"}, "'f'")
    with pytest.raises(UsageError, match=r"The '-o flag' option must be true or false"):
        bind_options(lambda flag=False: None, {"flag": "maybe"}, "'f'")


def test_option_pairs_are_key_equals_value_each_key_once():
    assert parse_option_pairs(["n=200", "expr=a=b", "empty="]) == {"n": "200", "expr": "a=b", "empty": ""}
    assert parse_option_pairs(None) == {}
    with pytest.raises(UsageError, match=r"The '-o' parameter must be KEY=VALUE\. Got 'n'\."):
        parse_option_pairs(["n"])
    with pytest.raises(UsageError, match=r"each key once\. Got 'n' twice \('1' and '2'\)"):
        parse_option_pairs(["n=1", "n=2"])
