"""Real geodata in and out: the world as a COG, raster tiles and their footprints, raster
indexes (one process and two), GeoParquet, GeoJSON, GeoTIFF maps, and the bad rasters users
bring."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
import shapely
import torch
from affine import Affine
from PIL import Image
from rasterio.transform import from_origin
from test_index import make_space

from geobind.cli import main
from geobind.data.footprints import tile_footprints
from geobind.data.fragments import commit_fragments, write_fragments, write_sharded
from geobind.data.geotiff import open_raster
from geobind.data.pairs import open_pairs, read_values
from geobind.data.tiling import plan_tiles, png_bytes, read_tile_batches, window_offsets
from geobind.encoders.media import decode_image
from geobind.encoders.weights import is_temporary
from geobind.search.index import open_index
from geobind.search.raster_index import build_raster_index
from geobind.world import LAND_COVERS, World, WorldConfig

SAND, WATER = LAND_COVERS.index("sand"), LAND_COVERS.index("water")
TILE = 128  # index tiles over the world's 3072 px mosaic: 24 x 22 windows


def write_tif(path: Path, bands: np.ndarray, crs="EPSG:32633", transform=None, **profile) -> Path:
    """A GeoTIFF of ``bands`` ``[count, h, w]``; ``crs=None`` writes no georeferencing."""
    count, height, width = bands.shape
    meta = dict(driver="GTiff", width=width, height=height, count=count, dtype=bands.dtype)
    if crs is not None:
        meta.update(crs=crs, transform=transform or from_origin(500_000, 5_000_000, 10, 10))
    with rasterio.open(path, "w", **meta, **profile) as dst:
        dst.write(bands)
    return path


def rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (3, height, width), dtype=np.uint8)


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """A small synthetic world (datasets, mosaic.png, mosaic.tif), its map, a tiny space and
    the space's index of the world's COG."""
    from geobind.data.world_source import WorldOptions, make_world

    root = tmp_path_factory.mktemp("geo")
    make_world(WorldOptions(out=str(root / "world"), places=60, workers=1), progress=False)
    space = make_space(root / "space", seed=0, audio=False)
    cog = root / "world" / "mosaic.tif"
    report = build_raster_index(space, [cog], tile_size=TILE)
    return {
        "root": root,
        "cog": cog,
        "map": World(WorldConfig(seed=0, places=60)),
        "space": space,
        "report": report,
    }


# -- the world as a raster ------------------------------------------------------------------
def test_world_make_writes_its_mosaic_as_a_georeferenced_cog(world):
    c = world["map"].config
    with rasterio.open(world["cog"]) as ds:
        assert ds.crs.to_epsg() == 4326
        assert np.allclose(ds.bounds, (c.lon_min, c.lat_min, c.lon_max, c.lat_max))
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and ds.overviews(1)
        pixels = ds.read().transpose(1, 2, 0)
    assert np.array_equal(pixels, np.asarray(Image.open(world["cog"].with_suffix(".png"))))


def test_tiles_cut_from_the_cog_embed_like_the_worlds_own_tiles(world, tiny_anchor):
    ds = open_pairs(world["root"] / "world" / "heldout.lance")
    rows = list(range(ds.count_rows()))
    lat, lon = np.array(read_values(ds, "lat", rows)), np.array(read_values(ds, "lon", rows))
    own = read_values(ds, "satellite", rows)
    w, size = world["map"], 64
    x, y = w.latlon_to_pixel(lat, lon)
    x0 = np.clip(np.round(x - size / 2), 0, w.width_px - size).astype(int)
    y0 = np.clip(np.round(y - size / 2), 0, w.height_px - size).astype(int)
    with open_raster(world["cog"]) as raster:
        cut = [raster.read_rgb(int(a), int(b), size)[0] for a, b in zip(x0, y0)]
    for pixels, data in zip(cut, own):
        assert np.array_equal(pixels, np.asarray(decode_image(data)))
    pngs = [png_bytes(p) for p in cut]
    torch.testing.assert_close(tiny_anchor.embed(pngs), tiny_anchor.embed(own), rtol=0, atol=1e-6)
    with rasterio.open(world["cog"]) as ds_:
        centres = tile_footprints(ds_.transform, "EPSG:4326", x0, y0, size)
    expected = w.pixel_to_latlon(x0 + size / 2, y0 + size / 2)
    assert np.allclose(centres.lat, expected[0]) and np.allclose(centres.lon, expected[1])


# -- search, GeoJSON, GeoParquet, maps ------------------------------------------------------
def shore_window(w: World) -> tuple[int, int]:
    """The index window holding the most of both sand and water."""
    labels = w.terrain.labels
    best, where = -1.0, (0, 0)
    for row in window_offsets(w.height_px, TILE, TILE):
        for col in window_offsets(w.width_px, TILE, TILE):
            counts = np.bincount(labels[row : row + TILE, col : col + TILE].ravel(), minlength=8)
            share = min(counts[SAND], counts[WATER]) / TILE**2
            if share > best:
                best, where = share, (col, row)
    assert best > 0.05
    return where


def test_a_shore_tile_query_puts_its_geojson_point_on_that_shore(world, tmp_path, capsys):
    w, space = world["map"], world["space"]
    col, row = shore_window(w)
    with open_raster(world["cog"]) as raster:
        pixels = raster.read_rgb(col, row, TILE)[0]
    query = tmp_path / "shore.png"
    Image.fromarray(pixels).save(query)
    out = tmp_path / "hits.geojson"
    grid = tmp_path / "grid.png"
    code, printed, err = run_cli(
        capsys, "search", space.path, "--index", "mosaic", "--image", query, "--top", 5,
        "--geojson", out, "--grid", grid,
    )  # fmt: skip
    assert code == 0, err
    # the grid's first cell is the query's tile, cut again from the raster
    from geobind.search.maps import TITLE_H

    first_cell = np.asarray(Image.open(grid).convert("RGB"))[TITLE_H : TITLE_H + 124, 2:126]
    assert np.abs(first_cell.mean((0, 1)) - pixels.mean((0, 1))).max() < 3
    hits = json.loads(out.read_text())
    assert hits["type"] == "FeatureCollection" and len(hits["features"]) == 5
    ranks = [f["properties"]["rank"] for f in hits["features"]]
    scores = [f["properties"]["score"] for f in hits["features"]]
    assert ranks == [1, 2, 3, 4, 5] and scores == sorted(scores, reverse=True)
    first = hits["features"][0]
    assert first["id"] == f"mosaic-{row:06d}-{col:06d}" and first["properties"]["score"] > 0.9999
    assert first["properties"]["source"] == str(world["cog"].resolve())
    # the point and its bbox, through the world's own map, land on the queried shore pixels
    west, south, east, north = first["bbox"]
    lon, lat = first["geometry"]["coordinates"]
    assert west < lon < east and south < lat < north
    x0, y0 = (round(v) for v in w.latlon_to_pixel(north, west))
    x1, y1 = (round(v) for v in w.latlon_to_pixel(south, east))
    assert (x0, y0, x1, y1) == (col, row, col + TILE, row + TILE)
    covers = np.bincount(w.terrain.labels[y0:y1, x0:x1].ravel(), minlength=len(LAND_COVERS))
    assert covers[SAND] > 0 and covers[WATER] > 0
    cx, cy = w.latlon_to_pixel(lat, lon)
    assert (round(cx), round(cy)) == (col + TILE // 2, row + TILE // 2)


def test_export_is_geoparquet_that_geopandas_and_duckdb_read(world, tmp_path, capsys):
    import duckdb
    import geopandas
    from pyproj import CRS

    space, c = world["space"], world["map"].config
    out = tmp_path / "tiles.parquet"
    code, printed, err = run_cli(capsys, "export", space.path, "--index", "mosaic", "--to", out)
    assert code == 0, err
    assert "GeoParquet 1.1" in printed
    geo = json.loads(pq.read_schema(out).metadata[b"geo"])
    column = geo["columns"]["geometry"]
    assert geo["version"] == "1.1.0" and geo["primary_column"] == "geometry"
    assert column["encoding"] == "WKB" and column["geometry_types"] == ["Polygon"]
    assert column["covering"]["bbox"]["xmin"] == ["bbox", "xmin"]
    assert np.allclose(column["bbox"], [c.lon_min, c.lat_min, c.lon_max, c.lat_max])

    gdf = geopandas.read_parquet(out)
    index = open_index(space, "mosaic")
    assert len(gdf) == index.rows == 24 * 22
    assert gdf.crs == CRS("OGC:CRS84") and gdf.crs.equals(CRS(4326), ignore_axis_order=True)
    assert set(gdf.geom_type) == {"Polygon"}
    assert np.allclose(gdf.total_bounds, [c.lon_min, c.lat_min, c.lon_max, c.lat_max])
    centroids = shapely.centroid(np.asarray(gdf.geometry))
    assert np.allclose(shapely.get_x(centroids), gdf["lon"])
    assert np.allclose(shapely.get_y(centroids), gdf["lat"])
    assert np.allclose(np.stack(gdf["embedding"].to_numpy()), index.vectors().numpy())
    assert set(gdf["source"]) == {str(world["cog"].resolve())}

    # DuckDB without its spatial extension (not installable offline): the bbox covering
    # struct filters rows, and the geometry reads as WKB
    box = (-74.0, 40.3, -73.5, 40.7)
    sql = (
        f"SELECT id, geometry FROM read_parquet('{out}') WHERE bbox.xmin >= {box[0]} "
        f"AND bbox.ymin >= {box[1]} AND bbox.xmax <= {box[2]} AND bbox.ymax <= {box[3]}"
    )
    rows = duckdb.sql(sql).fetchall()
    inside = gdf[gdf.geometry.within(shapely.box(*box))]
    assert rows and sorted(r[0] for r in rows) == sorted(inside["id"])
    by_id = dict(zip(gdf["id"], gdf.geometry))
    assert all(shapely.from_wkb(bytes(wkb)).equals(by_id[i]) for i, wkb in rows)


def test_an_index_of_a_dataset_exports_points_and_geojson_without_footprints(
    world, tmp_path, capsys
):
    import geopandas

    from geobind.search.index import build_index

    space, data = world["space"], world["root"] / "world" / "heldout.lance"
    build_index(space, data)
    out, hits = tmp_path / "heldout.parquet", tmp_path / "hits.geojson"
    assert run_cli(capsys, "export", space.path, "--index", "heldout", "--to", out)[0] == 0
    gdf = geopandas.read_parquet(out)
    assert set(gdf.geom_type) == {"Point"} and len(gdf) == open_pairs(data).count_rows()
    assert np.allclose(gdf.geometry.x, gdf["lon"]) and np.allclose(gdf.geometry.y, gdf["lat"])
    assert set(gdf["source"]) == {str(data.resolve())}
    code, _, err = run_cli(
        capsys, "search", space.path, "--data", data, "--text", "a road", "--top", 3,
        "--geojson", hits,
    )  # fmt: skip
    assert code == 0, err
    features = json.loads(hits.read_text())["features"]
    assert [f["properties"]["rank"] for f in features] == [1, 2, 3]
    assert all("bbox" not in f and f["geometry"]["type"] == "Point" for f in features)
    by_id = dict(zip(gdf["id"], zip(gdf["lon"], gdf["lat"])))
    for f in features:
        assert np.allclose(f["geometry"]["coordinates"], by_id[f["id"]])


def test_a_map_over_a_raster_is_a_geotiff_aligned_with_it(world, tmp_path, capsys):
    space = world["space"]
    out = tmp_path / "beach.png"
    code, printed, err = run_cli(
        capsys, "map", space.path, "--raster", world["cog"], "--text", "a beach", "--out", out
    )
    assert code == 0, err
    assert "map written to" in printed and out.is_file() and out.with_suffix(".tif").is_file()
    with rasterio.open(world["cog"]) as src, rasterio.open(out.with_suffix(".tif")) as heat:
        assert heat.crs == src.crs and heat.dtypes[0] == "float32"
        assert heat.transform == src.transform @ Affine.scale(TILE)
        assert (heat.width, heat.height) == (math.ceil(3072 / TILE), math.ceil(src.height / TILE))
        assert heat.bounds.left == src.bounds.left and heat.bounds.top == src.bounds.top
        grid = heat.read(1)
    index = open_index(space, "mosaic")
    query = space.embed("text", ["a beach"])[0]
    table = index.ds.to_table(columns=["col", "row"]).to_pydict()
    scores = (index.vectors() @ query).numpy()
    # interior tiles sit on one cell each: the cell holds the tile's own score
    for i in np.argsort(-scores)[:20]:
        col, row = table["col"][i], table["row"][i]
        if row + TILE <= 20 * TILE:
            assert grid[row // TILE, col // TILE] == pytest.approx(scores[i], abs=1e-5)
    assert np.isfinite(grid).all()  # every cell is covered by a tile
    picture = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert picture.std() > 5


def test_the_cog_serves_as_the_background_of_a_dataset_map(world, tmp_path, capsys):
    space, data = world["space"], world["root"] / "world" / "heldout.lance"
    out = tmp_path / "m.png"
    code, _, err = run_cli(
        capsys, "map", space.path, "--data", data, "--text", "a road", "--out", out,
        "--background", world["cog"],
    )  # fmt: skip
    assert code == 0, err
    png = run_cli(capsys, "map", space.path, "--data", data, "--text", "a road", "--out",
                  tmp_path / "p.png")  # fmt: skip
    assert png[0] == 0
    a = np.asarray(Image.open(out).convert("RGB")).astype(int)
    b = np.asarray(Image.open(tmp_path / "p.png").convert("RGB")).astype(int)
    assert a.shape == b.shape and np.abs(a - b).mean() < 2  # the same picture, read from the COG


# -- several rasters, scaling, processes ---------------------------------------------------
@pytest.fixture(scope="module")
def small_space(tmp_path_factory):
    return make_space(tmp_path_factory.mktemp("small") / "space", seed=1, audio=False)


def test_a_folder_and_a_list_of_rasters_make_one_index(small_space, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write_tif(tmp_path / "a" / "scene.tif", rgb(64, 96, 1))
    write_tif(tmp_path / "a" / "other.tif", rgb(64, 64, 2))
    write_tif(tmp_path / "b" / "scene.tif", rgb(64, 64, 3))
    report = build_raster_index(
        small_space, [tmp_path / "a", tmp_path / "b" / "scene.tif"], name="all"
    )
    index = open_index(small_space, report.path)
    sources = index.ds.to_table(columns=["source"]).column("source").to_pylist()
    assert sorted(set(sources)) == ["other", "scene", "scene-2"]
    assert sources.count("scene") == 2 * 3 and sources.count("other") == 4 and index.rows == 14
    keys = {r["key"]: r["path"] for r in index.meta["rasters"]}
    assert keys["scene-2"] == str((tmp_path / "b" / "scene.tif").resolve())
    # a rebuild is a new version of the same table
    again = open_index(small_space, build_raster_index(small_space, [tmp_path / "a"], "all").path)
    assert again.rows == 10 and again.ds.version > index.ds.version


def test_sixteen_bit_bands_are_chosen_and_stretched_as_recorded(small_space, tmp_path, capsys):
    rng = np.random.default_rng(0)
    bands = rng.integers(300, 4000, (12, 96, 96), dtype=np.uint16)
    path = write_tif(tmp_path / "s2.tif", bands)
    code, _, err = run_cli(capsys, "index", "build", small_space.path, "--raster", path)
    assert code == 1
    assert err.startswith("geobind: error: ") and err.count("\n") == 1
    assert "a uint16 raster of 12 bands needs a band choice: give --bands" in err
    code, _, err = run_cli(
        capsys, "index", "build", small_space.path, "--raster", path, "--bands", "4,3,13"
    )
    assert code == 1 and "bands 4,3,13: give three band numbers" in err and "1..12" in err
    code, printed, err = run_cli(
        capsys, "index", "build", small_space.path, "--raster", path, "--bands", "4,3,2"
    )
    assert code == 0, err
    scaling = open_index(small_space, "s2").meta["rasters"][0]["scaling"]
    assert scaling["bands"] == [4, 3, 2] and scaling["method"] == "percentile"
    assert scaling["percentiles"] == [2.0, 98.0]
    assert np.allclose(scaling["low"], np.percentile(bands[[3, 2, 1]], 2, axis=(1, 2)))
    assert np.allclose(scaling["high"], np.percentile(bands[[3, 2, 1]], 98, axis=(1, 2)))
    with open_raster(path, bands=(4, 3, 2)) as raster:
        pixels = raster.read_rgb(0, 0, 32)[0]
    assert pixels.min() == 0 and pixels.max() == 255  # the stretch spans the byte range


def test_two_processes_write_the_rows_and_vectors_of_one(small_space, tmp_path):
    path = write_tif(tmp_path / "scene.tif", rgb(160, 224, 5))
    one = open_index(small_space, build_raster_index(small_space, [path], name="one").path)
    torchrun = Path(sys.executable).with_name("torchrun")
    result = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "geobind.cli", "index",
         "build", str(small_space.path), "--raster", str(path), "--name", "two"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("tiles of") == 1  # rank 0 alone reports
    two = open_index(small_space, "two")
    assert two.meta["processes"] == 2 and len(two.ds.get_fragments()) == 2
    columns = ["id", "lat", "lon", "source", "col", "row", "footprint", "bbox"]
    assert two.table(columns) == one.table(columns) and one.rows == 5 * 7
    torch.testing.assert_close(two.vectors(), one.vectors(), rtol=0, atol=1e-5)
    assert not [p for p in (small_space.path / "index").iterdir() if is_temporary(p)]


def test_fragments_written_apart_are_committed_once_in_order(tmp_path):
    import pyarrow as pa

    schema = pa.schema([("n", pa.int32())])
    uri = tmp_path / "d.lance"

    def rows(*values):
        return [pa.record_batch([pa.array(values, pa.int32())], schema=schema)]

    first = write_fragments(uri, rows(3, 4), schema)
    second = write_fragments(uri, rows(5), schema)
    ds = commit_fragments(uri, second + first, schema)
    assert ds.to_table().column("n").to_pylist() == [5, 3, 4] and ds.version == 1
    batches = rows(6)
    ds = write_sharded(uri, batches, schema, mode="append")
    assert ds.to_table().column("n").to_pylist() == [5, 3, 4, 6] and ds.version == 2

    def failing():
        yield batches[0]
        raise ValueError("the producer broke")

    with pytest.raises(ValueError, match="the producer broke"):
        write_fragments(uri, failing(), schema)


# -- bad rasters ----------------------------------------------------------------------------
def test_bad_rasters_are_one_line_errors(small_space, tmp_path, capsys):
    def error(path, *extra) -> str:
        code, _, err = run_cli(capsys, "index", "build", small_space.path, "--raster", path, *extra)
        assert code == 1 and err.startswith("geobind: error: ") and err.count("\n") == 1, err
        return err

    bare = write_tif(tmp_path / "bare.tif", rgb(64, 64), crs=None)
    assert "bare.tif: the raster has no CRS (coordinate reference system)" in error(bare)
    empty = write_tif(tmp_path / "empty.tif", np.zeros((3, 64, 64), np.uint8), nodata=0)
    assert "nothing to index: every pixel of" in error(empty)
    small = write_tif(tmp_path / "small.tif", rgb(80, 100))
    assert "tile size 128 px is larger than the raster (100 x 80 px)" in error(
        small, "--tile-size", "128"
    )
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"II*\x00" + bytes(range(256)) * 8)
    assert "junk.tif: not a readable GeoTIFF" in error(junk)
    whole = write_tif(tmp_path / "whole.tif", rgb(256, 256), tiled=True, compress="deflate")
    cut = tmp_path / "cut.tif"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert "truncated or corrupt" in error(cut)
    assert "raster not found" in error(tmp_path / "nowhere.tif")
    code, _, err = run_cli(
        capsys, "map", small_space.path, "--raster", whole, "--text", "x", "--out",
        tmp_path / "m.png",
    )  # fmt: skip
    assert code == 1 and "no index of" in err and "run 'geobind index build" in err


def test_tiles_over_the_nodata_share_are_skipped_and_counted(small_space, tmp_path):
    pixels = rgb(64, 128)
    pixels[:, :, 64:] = 0  # the right half is no-data
    path = write_tif(tmp_path / "half.tif", pixels, nodata=0)
    plan = plan_tiles([path], 32)
    skipped: dict = {}
    kept = [t for b in read_tile_batches(plan, skipped=skipped) for t in b.tiles]
    assert len(plan) == 8 and len(kept) == 4 and skipped == {"half": 4}
    assert all(t.col < 64 for t in kept)
    report = build_raster_index(small_space, [path])
    assert report.rows == 4 and report.meta["skipped"] == {"half": 4}


def test_a_projected_raster_across_the_antimeridian_splits_its_footprints(small_space, tmp_path):
    # UTM 60S around Fiji: x 700..900 km crosses 180 degrees east near 17 degrees south
    transform = from_origin(700_000, 8_120_000, 1000, 1000)
    path = write_tif(tmp_path / "fiji.tif", rgb(64, 200), crs="EPSG:32760", transform=transform)
    plan = plan_tiles([path], 32)
    fp = next(b.footprints for b in read_tile_batches(plan, batch_size=100))
    crossing = fp.crosses_antimeridian
    assert crossing.sum() == 2  # one column of windows, two rows
    for i in range(len(crossing)):
        geometry = fp.geometry[i]
        parts = list(geometry.geoms) if crossing[i] else [geometry]
        for part in parts:  # no part spans the globe
            west, _, east, _ = part.bounds
            assert -180 <= west < east <= 180 and east - west < 1.0
        if crossing[i]:
            assert geometry.geom_type == "MultiPolygon" and len(parts) == 2
            assert fp.xmin[i] > 179 and fp.xmax[i] < -179  # RFC 7946: west edge > east edge
        assert -180 <= fp.lon[i] < 180
    report = build_raster_index(small_space, [path], tile_size=32)
    out = tmp_path / "fiji.parquet"
    code = main(["export", str(small_space.path), "--index", report.path.stem, "--to", str(out)])
    assert code == 0
    import geopandas

    gdf = geopandas.read_parquet(out)
    assert (gdf.geom_type == "MultiPolygon").sum() == 2
    geo = json.loads(pq.read_schema(out).metadata[b"geo"])["columns"]["geometry"]
    assert geo["geometry_types"] == ["MultiPolygon", "Polygon"] and "bbox" not in geo


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--raster", "/nowhere/scene.tif"], "raster not found: /nowhere/scene.tif"),
        (["--raster", "{tif}", "--tile-size", "0"], "--tile-size must be at least 1 pixel"),
        (["--raster", "{tif}", "--max-nodata", "1.5"], "--max-nodata must be within 0..1"),
    ],
)
def test_raster_arguments_are_checked_before_any_model_loads(
    tmp_path, capsys, monkeypatch, args, words
):
    import geobind.cli.search as commands

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded before the arguments were checked")

    monkeypatch.setattr(commands, "load_space", no_model)
    tif = write_tif(tmp_path / "scene.tif", rgb(64, 64))
    args = [a.format(tif=tif) for a in args]
    code, _, err = run_cli(capsys, "index", "build", tmp_path / "space", *args)
    assert code == 1 and err.startswith(f"geobind: error: {words}") and err.count("\n") == 1
