import pytest

from softtoken.experiments.carryover import _extends
from softtoken.experiments.spec import field_defaults
from softtoken.methods import RelaxThenSearchConfig
from softtoken.methods.gcg import GCGConfig, gcg_fast

DEFAULTS = {"lr": 0.1, "width": 8, "search": {"topk": 32, "restart": 0}}


@pytest.mark.parametrize("new, same", [
    ({"lr": 0.5, "width": 8, "search": {"topk": 4, "restart": 0}}, True),  # fields added at their defaults
    ({"lr": 0.5, "width": 16, "search": {"topk": 4, "restart": 0}}, False),  # an added field off its default
    ({"lr": 0.5, "width": 8, "search": {"topk": 4, "restart": 3}}, False),  # ... in a nested config
    ({"lr": 0.1, "width": 8, "search": {"topk": 4, "restart": 0}}, False),  # a stored value changed
    ({"width": 8, "search": {"topk": 4, "restart": 0}}, False),  # a stored field removed
])
def test_a_stored_config_is_extended_only_by_fields_at_their_defaults(new, same):
    assert _extends({"lr": 0.5, "search": {"topk": 4}}, new, DEFAULTS) is same


def test_field_defaults_are_the_class_defaults_in_nested_configs_too():
    defaults = field_defaults(RelaxThenSearchConfig())
    assert defaults["search"] == field_defaults(GCGConfig())  # the class's, not the field's default (gcg-fast)
    assert defaults["search"]["search_width"] == 512 != gcg_fast().search_width
    assert defaults["relax_fraction"] == 0.3 and defaults["search"]["target_curriculum"] == 0
