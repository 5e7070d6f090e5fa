"""geobind-location: (lat, lon) in degrees, continuous on the sphere, bound to the anchor."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

import geobind
from geobind.testing import train_tiny_space, train_tiny_stage
from geobind_location import LocationConfig, check, parse


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return geobind.build_encoder("location", {"embed_dim": 32})


def cosine(encoder, a, b) -> float:
    z = encoder.embed([a, b])
    return float(z[0] @ z[1])


def test_registered_with_its_columns_and_recipe():
    modality = geobind.get_registry().modality("location")
    assert geobind.get_registry().owner("location").distribution == "geobind-location"
    assert modality.columns == ("lat", "lon")
    names = {r.name: r for r in geobind.list_recipes()}
    assert names["location"].plugin == "geobind-location" and not names["location"].error
    assert [(s.student, s.teacher) for s in names["location"].stages] == [("location", "satellite")]


def test_embeds_lat_lon_pairs_as_unit_vectors(encoder):
    z = encoder.embed([(40.5, -74.0), (-33.9, 151.2), (0, 0)])
    assert z.shape == (3, 32)
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(3))


def test_antimeridian_is_as_continuous_as_anywhere(encoder):
    # +180 and -180 are one meridian; a step across it changes the embedding as little as the
    # same step across Greenwich (an Equal Earth projection puts them at opposite edges)
    for lat in (-60.0, 0.0, 35.0):
        torch.testing.assert_close(
            encoder.embed([(lat, 180.0)]), encoder.embed([(lat, -180.0)]), atol=1e-5, rtol=0
        )
        across = cosine(encoder, (lat, 179.99999), (lat, -179.99999))
        greenwich = cosine(encoder, (lat, -0.00001), (lat, 0.00001))
        assert across > 0.99 and abs(across - greenwich) < 0.01
    assert cosine(encoder, (0.0, 179.9), (0.0, -90.0)) < 0.95  # far apart stays apart


def test_each_pole_is_one_point_whatever_the_longitude(encoder):
    for lat in (90.0, -90.0):
        z = encoder.embed([(lat, lon) for lon in (-180.0, -45.0, 0.0, 120.0, 180.0)])
        torch.testing.assert_close(z, z[:1].expand_as(z), atol=1e-5, rtol=0)
    near = encoder.embed([(89.99999, lon) for lon in (0.0, 90.0, 180.0)])
    assert float((near @ near.T).min()) > 0.99
    assert cosine(encoder, (90.0, 0.0), (-90.0, 0.0)) < 0.95


def test_scales_reach_from_continents_to_the_demo_world(encoder):
    # the demo's places lie about 0.01 degrees apart: neighbours must still differ
    assert cosine(encoder, (40.50, -74.00), (40.51, -74.00)) < 0.999
    assert min(LocationConfig().sigmas) <= 1 and max(LocationConfig().sigmas) >= 1024


@pytest.mark.parametrize(
    "value, reason",
    [
        ((91.0, 0.0), "lat 91.0 is out of range"),
        ((-90.5, 10.0), "lat -90.5 is out of range"),
        ((10.0, 180.5), "lon 180.5 is out of range"),
        ((10.0, -181), "lon -181 is out of range"),
        ((float("nan"), 0.0), "lat nan is out of range"),
        ((0.0, float("inf")), "lon inf is out of range"),
        (("40.5", -74.0), "lat must be a number"),
        ((True, 0.0), "lat must be a number"),
        ((None, 0.0), "lat must be a number"),
        ((40.5,), "expected \\(lat, lon\\)"),
        ("40.5,-74.0", "expected \\(lat, lon\\)"),
        (b"", "expected \\(lat, lon\\)"),
    ],
)
def test_bad_coordinates_are_rejected_saying_why(encoder, value, reason):
    with pytest.raises(geobind.InputError, match=reason):
        check(value)
    with pytest.raises(geobind.InputError, match=reason):
        encoder.embed([value])


def test_parse_reads_lat_comma_lon_in_degrees():
    assert parse("40.5,-74.0") == (40.5, -74.0)
    assert parse(" -33.9 , 151.2 ") == (-33.9, 151.2)
    for bad, reason in [
        ("40.5", "LAT,LON"),
        ("a,b", "LAT,LON"),
        ("95,0", "out of range"),
        ("", "LAT,LON"),
    ]:
        with pytest.raises(geobind.InputError, match=reason):
            parse(bad)


def test_bad_config_is_an_error_naming_the_setting():
    with pytest.raises(geobind.ConfigError, match="sigmas"):
        geobind.build_encoder("location", {"sigmas": [1.0, -2.0]})
    with pytest.raises(geobind.ConfigError, match="unknown key 'scales'"):
        geobind.build_encoder("location", {"scales": [1.0]})


def test_weights_round_trip_with_their_frequencies(encoder, tmp_path):
    path = tmp_path / "location.safetensors"
    geobind.save_state_dict(path, encoder.net.state_dict())
    torch.manual_seed(123)  # another seed of the MLPs: the file must restore everything
    other = geobind.build_encoder("location", {"embed_dim": 32}, weights=path)
    places = [(40.5, -74.0), (-33.9, 151.2)]
    torch.testing.assert_close(other.embed(places), encoder.embed(places))


def test_import_is_light():
    code = "import sys, geobind_location; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


@pytest.mark.slow
def test_its_recipe_trains_against_a_frozen_anchor_and_leaves_the_rest_alone(
    tmp_path, tiny_pair_dataset
):
    space = train_tiny_space(tmp_path / "space", tiny_pair_dataset)
    before = {name: e.sha256 for name, e in geobind.load_space(space).entries.items()}
    metrics = train_tiny_stage("location", space, tiny_pair_dataset, steps=3)
    assert metrics["location"]["steps"] == 3
    loaded = geobind.load_space(space)
    entry = loaded.entry("location")
    assert entry.plugin == "geobind-location" and entry.config["embed_dim"] == 32  # the anchor's
    assert entry.aligned_to == {"modality": "satellite", "sha256": before["satellite"]}
    assert {n: e.sha256 for n, e in loaded.entries.items() if n != "location"} == before
    z = loaded.embed("location", ["40.05,-73.95", (40.0, -74.0)])
    assert z.shape == (2, 32) and math.isclose(float(z[0].norm()), 1.0, rel_tol=1e-5)


def test_the_floor_features_are_position_alone_and_continuous_on_the_sphere():
    features = geobind.get_registry().modality("location").features()
    x = features.fit([(0.0, 0.0)]).transform(
        [(10.0, 180.0), (10.0, -180.0), (90.0, 5.0), (90.0, -120.0)]
    )
    assert x.shape == (4, 2 * 32 * len(LocationConfig().sigmas))
    assert abs(x[0] - x[1]).max() < 1e-6 and abs(x[2] - x[3]).max() < 1e-6
    assert features.transform([]).shape[0] == 0
    with pytest.raises(geobind.InputError, match="out of range"):
        features.transform([(91.0, 0.0)])
