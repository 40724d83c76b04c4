"""Constructor options from JSON and YAML are checked against the constructor's type hints."""

import pytest

from stereodistill.errors import ConfigError
from stereodistill.models import build_model


@pytest.mark.parametrize(
    ("arch", "options", "expected"),
    [
        ("psmnet", {"align_corners": "maybe"}, "psmnet: option align_corners must be true or false, got 'maybe'"),
        ("psmnet", {"align_corners": 1}, "option align_corners must be true or false, got 1"),
        ("lean", {"width": "wide"}, "lean: option width must be a number, got 'wide'"),
        ("lean", {"groups": 4.0}, "option groups must be an integer, got 4.0"),
        ("lean", {"refine": True}, "option refine must be an integer, got True"),
        ("lean", {"depth": [1, "2", 1]}, "option depth must be a list of integers"),
        ("gwcnet-g", {"concat": False}, "gwcnet-g: unknown option 'concat'; valid: max_disp, use_concat_volume"),
    ],
)
def test_a_wrong_option_is_one_line_naming_it(arch, options, expected):
    with pytest.raises(ConfigError) as info:
        build_model(arch, max_disp=16, **options)
    assert expected in str(info.value)


def test_options_of_the_right_type_build_and_none_keeps_a_preset():
    net = build_model("lean-xs", max_disp=16, width=1, depth=(1, 1, 1), groups=None)
    assert net.knobs.width == 1 and net.knobs.depth == (1, 1, 1) and net.knobs.groups == 4


def test_numpy_numbers_count_as_numbers_and_keyword_only_options_are_known():
    import numpy as np

    from stereodistill.models.options import checked_options

    net = build_model("lean-xs", max_disp=np.int64(16), width=np.float32(0.5), depth=(np.int64(1), 2, 1))
    assert net.config["max_disp"] == 16 and type(net.config["max_disp"]) is int and net.knobs.width == 0.5
    assert checked_options(type(net), "lean-xs", {"depth": (np.int8(1), 2, 1)}) == {"depth": (1, 2, 1)}
    plain = checked_options(type(net), "lean-xs", {"max_disp": np.array(16), "depth": np.array([1, 1, 1])})
    assert plain == {"max_disp": 16, "depth": [1, 1, 1]} and type(plain["max_disp"]) is int
    with pytest.raises(ConfigError, match="option align_corners must be true or false"):
        build_model("psmnet", max_disp=16, align_corners=np.float64(1.0))

    class KeywordOnly:
        def __init__(self, max_disp: int = 16, *, scale: float = 1.0) -> None: ...

    checked_options(KeywordOnly, "kw", {"scale": 2})
    with pytest.raises(ConfigError, match="option scale must be a number"):
        checked_options(KeywordOnly, "kw", {"scale": "x"})

    class Unresolvable:
        def __init__(
            self,
            max_disp: int = 16,
            path: "NotImported | None" = None,  # noqa: F821  (a NameError when resolved)
            doc: "pytest.Nope" = None,  # an AttributeError when resolved
        ) -> None: ...

    checked_options(Unresolvable, "u", {"path": "a", "doc": 1})  # unresolvable hints go unchecked, never crash
    with pytest.raises(ConfigError, match="option max_disp must be an integer"):  # the others still are checked
        checked_options(Unresolvable, "u", {"max_disp": "sixteen", "path": "a"})


def test_every_option_of_every_network_of_the_zoo_has_a_hint_the_check_reads():
    import inspect

    from stereodistill.config import keyword_parameters
    from stereodistill.models import list_models
    from stereodistill.models.options import _fits
    from stereodistill.models.zoo import model_class

    for arch in list_models():
        init = model_class(arch).__init__
        params, hints = keyword_parameters(model_class(arch))
        for name, parameter in inspect.signature(init).parameters.items():
            if name != "self" and parameter.kind is not parameter.VAR_KEYWORD:
                hint = hints.get(name)
                assert name in params and hint is not None and _fits(hint, parameter.default) is not False, (arch, name)
