"""Numbers, not only pictures: --channels, --json and --save-arrays."""

import json
import re

import numpy as np
import pytest

from conftest import SAMPLE_PHOTO

PREDICTION = re.compile(r"(\d+)\. (\S+) +(\d+\.\d\d)%")


def test_chosen_channels_are_drawn_in_order_for_every_layer(run, tmp_path):
    out = tmp_path / "figure.png"
    status, stdout, err = run(SAMPLE_PHOTO, "--weights", "none", "--quiet", "--layers", "conv2d_1", "mixed3",
                              "--channels", "12,30,7", "--json", "--out", out)
    assert status == 0, err
    record = json.loads(out.with_suffix(".json").read_text())
    for layer in record["layers"]:
        assert [c["index"] for c in layer["channels"]] == [12, 30, 7]
        assert layer["ranking"] == "chosen"
    assert record["settings"]["channels"] == [12, 30, 7]
    assert record["settings"]["max_maps"] is None  # the channels were chosen, not the top 64
    assert record["settings"]["rank"] is None  # nor ranked
    assert record["settings"]["preprocess"] == "keras.applications.inception_v3.preprocess_input"  # its own


def test_a_chosen_channel_out_of_range_names_the_layers_channel_count(run, tmp_path):
    status, out, err = run(SAMPLE_PHOTO, "--weights", "none", "--quiet", "--layers", "mixed3", "conv2d_1",
                           "--channels", "3,40", "--out", tmp_path)
    assert status == 2
    assert err == "deepviz: error: channel 40: layer conv2d_1 has 32 channels (0 to 31)\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", ["a,b", "3,,4", "-1,2"])
def test_badly_written_channels_are_usage_errors(run, value):
    status, _, err = run(SAMPLE_PHOTO, f"--channels={value}")
    assert status == 2
    assert err.startswith("deepviz: error: argument --channels: expected channel indices") and err.count("\n") == 1


def test_json_holds_predictions_settings_versions_and_layer_statistics(run, random_weights_file, tmp_path):
    out = tmp_path / "figure.png"
    status, stdout, err = run(SAMPLE_PHOTO, "--weights", random_weights_file, "--quiet", "--layers", "mixed3",
                              "avg_pool", "--max-maps", 5, "--json", "--save-arrays", "--out", out)
    assert status == 0, err
    lines = stdout.splitlines()
    assert lines[-3:] == [f"wrote {out}", f"wrote {out.with_suffix('.json')}", f"wrote {out.with_suffix('.npz')}"]
    record = json.loads(out.with_suffix(".json").read_text())
    printed = [PREDICTION.fullmatch(line).groups() for line in lines[:3]]
    assert [(p["rank"], p["class"]) for p in record["predictions"]] == [(int(r), n) for r, n, _ in printed]
    assert [round(p["probability"] * 100, 2) for p in record["predictions"]] == [float(p) for _, _, p in printed]
    assert record["model"] == "InceptionV3" and record["weights"] == random_weights_file.name
    assert record["versions"]["backend"] in ("tensorflow", "jax", "torch")
    assert {"keras", "numpy", "matplotlib", "pillow", "deepviz"} <= set(record["versions"])
    assert record["settings"]["max_maps"] == 5 and record["settings"]["rank"] == "mean"
    assert [layer["ranking"] for layer in record["layers"]] == ["mean", None]  # avg_pool's values are not ranked

    arrays = np.load(out.with_suffix(".npz"))
    assert sorted(arrays.files) == ["avg_pool", "mixed3", "predictions"]
    maps = arrays["mixed3"]
    assert maps.shape == (17, 17, 768)
    mixed3 = record["layers"][0]
    assert mixed3["shape"] == [17, 17, 768]
    assert mixed3["min"] == pytest.approx(float(maps.min())) and mixed3["max"] == pytest.approx(float(maps.max()))
    assert mixed3["mean"] == pytest.approx(float(maps.mean()), rel=1e-5)
    means = maps.mean(axis=(0, 1))
    ranked = [c["index"] for c in mixed3["channels"]]
    assert ranked == np.argsort(-means, kind="stable")[:5].tolist()
    assert [c["mean"] for c in mixed3["channels"]] == pytest.approx(means[ranked].tolist(), rel=1e-5)
    assert mixed3["dead_channels"] == int(np.sum(maps.reshape(-1, 768).std(axis=0) == 0))
    assert record["layers"][1]["shape"] == [2048] and record["layers"][1]["channels"] is None  # every key, always
    assert int(np.argmax(arrays["predictions"])) == np.argsort(-arrays["predictions"])[0]
    assert arrays["predictions"].shape == (1000,)
    top = np.argsort(-arrays["predictions"])[:3]
    assert [float(p) for _, _, p in printed] == pytest.approx((arrays["predictions"][top] * 100).tolist(), abs=0.006)
    assert [p["index"] for p in record["predictions"]] == top.tolist()
    assert (record["settings"]["cam"], record["settings"]["cam_layer"]) == (False, None)


def test_json_without_predictions_says_why(run, backbone_weights, tmp_path):
    out = tmp_path / "figure.png"
    status, _, _ = run(SAMPLE_PHOTO, "--weights", backbone_weights, "--quiet", "--layers", "mixed0", "--json",
                       "--save-arrays", "--out", out)
    assert status == 0
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["predictions"] is None
    assert record["predictions_unavailable"] == "weights inception_v3_2015_notop.weights.h5 have no classifier head"
    assert sorted(np.load(out.with_suffix(".npz")).files) == ["mixed0", "output"]
