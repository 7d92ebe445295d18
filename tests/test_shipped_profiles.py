"""The profiles dnnbench ships: served where the versions installed are the ones that recorded them."""

import pytest
import torch

from dnnbench import profiling
from dnnbench.measure.kernels import profile
from dnnbench.profiling import shipped
from dnnbench.store import Store
from dnnbench.zoo import get


def recorded(name, size, batch=1):
    entry = get(name)
    found = profile(entry.build("meta"), torch.empty(batch, 3, size, size, device="meta")).to_dict()
    return {**found, "weights_bytes": 123}


def test_a_shipped_profile_serves_only_the_versions_that_recorded_it(tmp_path, monkeypatch):
    path = tmp_path / "profiles.json.xz"
    made = {("resnet18", 32, 1): recorded("resnet18", 32), ("timm/resnet10t", 32, 1): recorded("timm/resnet10t", 32)}
    shipped.write(path, made, profiling.PROFILE_FORMAT)
    wanted = [*made, ("resnet18", 32, 16), ("resnet34", 32, 1)]
    assert shipped.lookup(wanted, profiling.PROFILE_FORMAT, path) == made  # not shipped: not served
    assert shipped.lookup(wanted, profiling.PROFILE_FORMAT + 1, path) == {}  # another recorder
    installed = shipped.libraries()
    monkeypatch.setattr(shipped, "libraries", lambda: {**installed, "timm": "0.0.1"})
    assert set(shipped.lookup(wanted, profiling.PROFILE_FORMAT, path)) == {("resnet18", 32, 1)}  # timm's own
    monkeypatch.setattr(shipped, "libraries", lambda: {**installed, "torch": "0.0.1"})
    assert shipped.lookup(wanted, profiling.PROFILE_FORMAT, path) == {}  # every kernel depends on torch


def test_profiles_come_from_the_shipped_file_before_any_worker(tmp_path, monkeypatch):
    path = tmp_path / "profiles.json.xz"
    made = {("resnet18", 32, 1): recorded("resnet18", 32)}
    shipped.write(path, made, profiling.PROFILE_FORMAT)
    monkeypatch.setattr(shipped, "PATH", path)

    def no_worker(*args, **kwargs):
        raise AssertionError("a profiling worker was started")

    monkeypatch.setattr(profiling, "_run", no_worker)
    found, errors = profiling.profiles(list(made))
    assert found == made and errors == {}
    with Store(tmp_path / "p.db") as store:  # kept in the database, as recorded ones are (the report reads them)
        assert profiling.profiles(list(made), store)[0] == made
        assert store.profiles(profiling.versions()) == made
    monkeypatch.setattr(shipped, "PATH", tmp_path / "absent.json.xz")  # no file: the workers record them
    with pytest.raises(AssertionError, match="worker was started"):
        profiling.profiles(list(made))


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "vit_b_16", "timm/deit_tiny_patch16_224",
                                  "timm/convnext_atto", "enet", "pretrainedmodels/resnext101_32x4d"])
@pytest.mark.parametrize("batch", shipped.BATCH_SIZES)
def test_the_shipped_profiles_are_what_recording_gives_here(name, batch):
    entry = get(name)
    key = (name, entry.input_size, batch)
    served = shipped.lookup([key], profiling.PROFILE_FORMAT)
    needs = shipped._NEEDS[entry.source]
    data = shipped._load(str(shipped.PATH))
    assert data is not None, f"{shipped.PATH} is missing: run scripts/ship_profiles.py"
    if any(data["libraries"][p] != shipped.libraries()[p] for p in needs):
        assert served == {}  # recorded with other versions: never served
        return
    fresh = recorded(name, entry.input_size, batch)
    assert served[key]["calls"] == fresh["calls"] and served[key]["specs"] == fresh["specs"]
