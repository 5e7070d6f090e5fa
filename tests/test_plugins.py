"""The plugin host: discovery, isolation of broken plugins, allow-list, strict mode, names."""

from __future__ import annotations

import types
import warnings
from dataclasses import dataclass

import pytest

import geobind
from geobind import plugins as host
from geobind.plugins import PluginError, PluginWarning, Registry


@dataclass
class ToyConfig:
    embed_dim: int = 4


def toy_modality(name: str) -> geobind.Modality:
    return geobind.Modality(
        name=name,
        config=ToyConfig,
        build_encoder=lambda c, w: None,
        build_preprocess=lambda c, t: str,
        check=lambda v: None,
        storage="string",
        description=f"toy {name}",
    )


def plugin_with(*names: str) -> types.SimpleNamespace:
    @geobind.hookimpl
    def geobind_register_modalities(register):
        for name in names:
            register(toy_modality(name))

    return types.SimpleNamespace(geobind_register_modalities=geobind_register_modalities)


def fake_entry_points(monkeypatch: pytest.MonkeyPatch, *entries) -> None:
    """Installed plugins as (distribution, loader) pairs, in place of real entry points."""
    monkeypatch.setattr(
        host, "_entry_points", lambda: [(dist, "1.0", load) for dist, load in entries]
    )


def failing_import() -> None:
    raise ImportError("No module named 'missing_dependency'")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv(host.ALLOW_ENV, raising=False)
    monkeypatch.delenv(host.STRICT_ENV, raising=False)
    return monkeypatch


def test_builtins_register_through_the_same_hooks(clean_env):
    fake_entry_points(clean_env)
    registry = Registry().load()
    assert registry.plugins["geobind"].builtin
    assert registry.plugins["geobind"].hooks == [
        "geobind_register_datasets",
        "geobind_register_modalities",
    ]
    assert {"world", "sat2cap", "soundingearth", "table"} <= set(registry.datasets)
    assert registry.owner("satellite").distribution == "geobind"


def test_a_world_without_its_modalities_plugins_fails_before_anything_is_made(clean_env, tmp_path):
    from geobind.data import synthetic
    from geobind.data.world_source import WorldOptions, make_world
    from geobind.errors import GeobindError

    fake_entry_points(clean_env)  # geobind alone: satellite, no ground, text or audio
    clean_env.setattr(synthetic, "get_registry", lambda: Registry().load())
    out = tmp_path / "world"
    with pytest.raises(GeobindError, match=r"modality 'ground'.*pip install geobind-ground"):
        make_world(WorldOptions(out=str(out), places=20))
    assert not out.exists()  # nor the world built (seconds) before saying so


def test_installed_distributions_are_discovered_through_entry_points(clean_env):
    registry = Registry().load()
    owners = {name: registry.owner(name).distribution for name in registry.modalities}
    assert owners["ground"] == "geobind-ground"
    assert owners["text"] == "geobind-text"
    assert owners["audio"] == "geobind-audio"


def test_broken_plugin_is_skipped_with_a_warning_naming_it(clean_env):
    fake_entry_points(
        clean_env, ("acme-broken", failing_import), ("acme-good", lambda: plugin_with("good"))
    )
    with pytest.warns(PluginWarning, match=r"acme-broken 1.0.*missing_dependency"):
        registry = Registry().load()
    assert "good" in registry.modalities
    assert [b.distribution for b in registry.broken] == ["acme-broken"]
    assert "ImportError" in registry.broken[0].error


def test_strict_mode_raises_on_a_broken_plugin(clean_env):
    clean_env.setenv(host.STRICT_ENV, "1")
    fake_entry_points(clean_env, ("acme-broken", failing_import))
    with pytest.raises(PluginError, match="acme-broken 1.0 is broken.*missing_dependency"):
        Registry().load()


def test_plugin_failing_inside_register_keeps_nothing(clean_env):
    @geobind.hookimpl
    def geobind_register_modalities(register):
        register(toy_modality("half"))
        raise RuntimeError("boom after one registration")

    plugin = types.SimpleNamespace(geobind_register_modalities=geobind_register_modalities)
    fake_entry_points(clean_env, ("acme-half", lambda: plugin))
    with pytest.warns(PluginWarning, match="acme-half.*boom"):
        registry = Registry().load()
    assert "half" not in registry.modalities
    assert "acme-half" not in registry.plugins
    assert registry.pm.get_plugin("acme-half") is None


def test_misspelt_hook_fails_loudly(clean_env):
    @geobind.hookimpl
    def geobind_register_modalitys(register):  # the typo under test
        register(toy_modality("typo"))

    plugin = types.SimpleNamespace(geobind_register_modalitys=geobind_register_modalitys)
    fake_entry_points(clean_env, ("acme-typo", lambda: plugin))
    with pytest.warns(PluginWarning, match="acme-typo.*unknown hook.*geobind_register_modalitys"):
        Registry().load()
    clean_env.setenv(host.STRICT_ENV, "1")
    with pytest.raises(PluginError, match="geobind_register_modalitys"):
        Registry().load()


def test_register_rejects_what_is_not_a_modality(clean_env):
    @geobind.hookimpl
    def geobind_register_modalities(register):
        register({"name": "dict-is-not-a-modality"})

    plugin = types.SimpleNamespace(geobind_register_modalities=geobind_register_modalities)
    fake_entry_points(clean_env, ("acme-dict", lambda: plugin))
    with pytest.warns(PluginWarning, match="acme-dict.*takes a Modality, got dict"):
        Registry().load()


def test_allow_list_loads_only_named_distributions(clean_env):
    fake_entry_points(
        clean_env,
        ("acme-one", lambda: plugin_with("one")),
        ("acme_two", lambda: plugin_with("two")),
    )
    clean_env.setenv(host.ALLOW_ENV, "acme-two")  # names compare as pip does: _ and - alike
    registry = Registry().load()
    assert set(registry.modalities) == {"satellite", "two"}


def test_empty_allow_list_loads_no_plugin_but_the_builtins(clean_env):
    loaded = []
    fake_entry_points(clean_env, ("acme-one", lambda: loaded.append(1) or plugin_with("one")))
    clean_env.setenv(host.ALLOW_ENV, "")
    registry = Registry().load()
    assert set(registry.plugins) == {"geobind"} and loaded == []


def test_duplicate_modality_names_both_distributions(clean_env):
    fake_entry_points(
        clean_env,
        ("acme-audio", lambda: plugin_with("sound")),
        ("other-audio", lambda: plugin_with("sound")),
    )
    with pytest.raises(
        PluginError, match="'sound' is registered by both acme-audio and other-audio"
    ):
        Registry().load()


def test_duplicate_with_a_builtin_is_an_error_even_when_not_strict(clean_env):
    fake_entry_points(clean_env, ("acme-sat", lambda: plugin_with("satellite")))
    with pytest.raises(PluginError, match="both geobind and acme-sat"):
        Registry().load()


def test_loading_is_lazy_and_runs_once(clean_env):
    calls = []
    fake_entry_points(clean_env, ("acme-once", lambda: calls.append(1) or plugin_with("once")))
    host.reset_registry()
    try:
        assert calls == []  # nothing loads until the registry is asked for
        first = host.get_registry()
        assert host.get_registry() is first and calls == [1]
    finally:
        host.reset_registry()


def test_hook_geobind_register_modalities(register_plugin):
    info = register_plugin(plugin_with("alpha", "beta"), name="acme-two-modalities")
    registry = geobind.get_registry()
    assert info.modalities == ["alpha", "beta"]
    assert info.hooks == ["geobind_register_modalities"]
    assert registry.owner("beta").distribution == "acme-two-modalities"
    assert registry.modality("alpha").description == "toy alpha"


def test_hook_geobind_register_datasets(register_plugin):
    @dataclass
    class Options:
        out: str = "here"

    seen = []

    @geobind.hookimpl
    def geobind_register_datasets(register):
        register(
            geobind.DatasetSource(
                name="acme-import",
                kind="importer",
                options=Options,
                run=seen.append,
                description="acme layout",
            )
        )

    plugin = types.SimpleNamespace(geobind_register_datasets=geobind_register_datasets)
    info = register_plugin(plugin, name="acme-data")
    source = geobind.get_registry().dataset_source("acme-import")
    source.run(source.options())
    assert info.datasets == ["acme-import"] and seen == [Options(out="here")]


def test_register_plugin_fixture_undoes_itself():
    registry = geobind.get_registry()
    assert "alpha" not in registry.modalities and "acme-two-modalities" not in registry.plugins
    assert registry.pm.get_plugin("acme-data") is None


def test_unknown_modality_names_the_distribution_to_install(clean_env):
    fake_entry_points(clean_env)
    registry = Registry().load()
    with pytest.raises(PluginError, match=r"modality 'audio'.*pip install geobind-audio"):
        registry.modality("audio")
    with pytest.raises(PluginError, match=r"modality 'smell'.*registered: satellite"):
        registry.modality("smell")


def test_modality_validates_what_plugins_give():
    with pytest.raises(ValueError, match="must match"):
        toy_modality("Bad Name")

    @dataclass
    class NoDim:
        width: int = 3

    with pytest.raises(TypeError, match="embed_dim"):
        geobind.Modality(
            name="nodim", config=NoDim, build_encoder=None, build_preprocess=None, check=None
        )


@dataclass(frozen=True)
class Smell:
    name: str


@geobind.hookspec
def geobind_register_smells(register):
    """A hook geobind does not have, to show what adding one takes.

    :param register: call once per Smell.
    """


def test_a_new_hook_is_one_table_entry(clean_env):
    @geobind.hookimpl(specname="geobind_register_smells")
    def register_smells(register):
        register(Smell("rose"))
        register(Smell("sea"))

    plugin = types.SimpleNamespace(geobind_register_smells=register_smells)
    fake_entry_points(clean_env, ("acme-smells", lambda: plugin))
    smells = host.Contribution("geobind_register_smells", Smell, "smells", "smell")
    specs = types.SimpleNamespace(geobind_register_smells=geobind_register_smells)
    registry = Registry((*host.CONTRIBUTIONS, smells), (geobind.hookspecs, specs)).load()
    info = registry.plugins["acme-smells"]
    assert info.registered["smells"] == ["rose", "sea"] and info.modalities == []
    assert registry.tables["smells"]["sea"] == Smell("sea")
    assert info.as_dict()["smells"] == ["rose", "sea"]
    assert registry.plugins["geobind"].registered["smells"] == []
    with pytest.raises(
        PluginError, match="smell 'rose' is registered by both acme-smells and acme-copy"
    ):
        registry.add(
            types.SimpleNamespace(geobind_register_smells=register_smells, copy=1), "acme-copy"
        )
    registry.remove("acme-smells")
    assert registry.tables["smells"] == {} and "acme-smells" not in registry.plugins


def test_hooks_are_called_with_the_arguments_they_declare(clean_env, monkeypatch):
    offered = host.hook_arguments
    monkeypatch.setattr(
        host,
        "hook_arguments",  # as if a later geobind offered more
        lambda register: {**offered(register), "geobind_version": "0.2"},
    )

    @geobind.hookimpl
    def geobind_register_modalities(register):  # written before the new argument existed
        register(toy_modality("old"))

    @geobind.hookimpl
    def geobind_register_datasets():  # declares none: allowed, as in pluggy
        calls.append("datasets")

    calls: list[str] = []
    plugin = types.SimpleNamespace(
        geobind_register_modalities=geobind_register_modalities,
        geobind_register_datasets=geobind_register_datasets,
    )
    fake_entry_points(clean_env, ("acme-old", lambda: plugin))
    registry = Registry().load()
    assert registry.owner("old").distribution == "acme-old" and calls == ["datasets"]


def test_no_warning_when_every_plugin_is_fine(clean_env):
    fake_entry_points(clean_env, ("acme-one", lambda: plugin_with("one")))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Registry().load().broken == []
