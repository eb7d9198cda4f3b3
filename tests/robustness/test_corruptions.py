"""The 15 common corruptions: the registry, the contract every corruption keeps, the documented
amount each one changes its input by, agreement with reference implementations (PIL, scipy,
colorsys), the accuracy table on the demo model, and the two commands."""

from __future__ import annotations

import colorsys
import io
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from robustness.cli import main
from robustness.core.corruptions import (
    CORRUPTION_ORDER,
    CORRUPTIONS,
    constants_for,
    corrupt,
    corruption_names,
    get_corruption,
)
from robustness.core.corruptions.accuracy import corruption_accuracy
from robustness.core.corruptions.base import CHUNK
from robustness.core.corruptions.defocus_blur import disk_kernel
from robustness.core.corruptions.filters import clipped_zoom
from robustness.core.corruptions.jpeg_compression import jpeg
from robustness.core.corruptions.shot_noise import poisson_quantile
from robustness.core.errors import DataError, UsageError

NAMES = corruption_names()
# Corruptions with no random draws: the same output whatever the seed.
FIXED = {"defocus_blur", "zoom_blur", "brightness", "contrast", "pixelate", "jpeg_compression"}


def smooth_images(n: int, channels: int, side: int, seed: int = 0) -> torch.Tensor:
    """Natural-looking test images: random colours enlarged smoothly, in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, channels, 4, 4, generator=g)
    return F.interpolate(coarse, size=(side, side), mode="bilinear", align_corners=False).clamp(0, 1)


@pytest.fixture(scope="module")
def rgb32() -> torch.Tensor:
    return smooth_images(6, 3, 32)


@pytest.fixture(scope="module")
def rgb40() -> torch.Tensor:
    return smooth_images(2, 3, 40, seed=1)  # above 32x32: the ImageNet-C constants, scaled


# -- the registry -------------------------------------------------------------------------------


def test_the_registry_holds_the_15_benchmark_corruptions_in_their_order():
    assert NAMES == list(CORRUPTION_ORDER) and len(NAMES) == 15
    assert CORRUPTIONS.package == "robustness.core.corruptions"
    families = {name: CORRUPTIONS.get(name).family for name in NAMES}
    assert [families[n] for n in NAMES].count("noise") == 3
    assert {n for n, f in families.items() if f == "weather"} == {"snow", "frost", "fog", "brightness"}


def test_an_unknown_corruption_is_named_with_the_known_ones():
    with pytest.raises(UsageError) as raised:
        get_corruption("gaussian_nois")
    assert raised.value.message == "unknown corruption 'gaussian_nois'"
    assert (
        raised.value.fix.startswith("Known: brightness, contrast") and "'gaussian_noise'" in raised.value.fix
    )


def test_constants_are_the_benchmarks_and_chosen_by_size():
    gaussian, pixelate = CORRUPTIONS.get("gaussian_noise"), CORRUPTIONS.get("pixelate")
    assert gaussian.cifar == (0.04, 0.06, 0.08, 0.09, 0.10) and gaussian.imagenet == (
        0.08,
        0.12,
        0.18,
        0.26,
        0.38,
    )
    assert pixelate.cifar == (0.95, 0.9, 0.85, 0.75, 0.65) and pixelate.imagenet == (0.6, 0.5, 0.4, 0.3, 0.25)
    assert CORRUPTIONS.get("jpeg_compression").cifar == (80, 65, 58, 50, 40)
    assert CORRUPTIONS.get("zoom_blur").cifar[0] == pytest.approx((1.0, 1.01, 1.02, 1.03, 1.04, 1.05, 1.06))
    assert constants_for(8, 8) == ("cifar10-c", 1.0) and constants_for(32, 28) == ("cifar10-c", 1.0)
    assert constants_for(224, 224) == ("imagenet-c", 1.0)
    assert constants_for(64, 64) == ("imagenet-c", pytest.approx(64 / 224))


# -- the contract, for every corruption -------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_every_corruption_keeps_the_contract(name, digits_test, rgb32, rgb40):
    for x in (digits_test.x[:40], rgb32, rgb40):
        out = corrupt(x, name, 5, seed=3)
        assert out.shape == x.shape and out.dtype == x.dtype and torch.isfinite(out).all()
        assert out.min() >= 0 and out.max() <= 1
        assert (out - x).abs().mean() > 1e-3, f"{name} did not change {tuple(x.shape)} inputs"
        assert torch.equal(out, corrupt(x, name, 5, seed=3))  # deterministic under a seed
        if name not in FIXED:
            assert not torch.equal(out, corrupt(x, name, 5, seed=4))
    # Other bounds: corrupted in [0, 1] and mapped back, never out of them.
    wide = rgb32 * 2 - 1
    out = corrupt(wide, name, 3, seed=3, bounds=(-1.0, 1.0))
    assert out.min() >= -1 and out.max() <= 1
    torch.testing.assert_close(out, corrupt(rgb32, name, 3, seed=3) * 2 - 1, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", NAMES)
def test_a_samples_draws_do_not_depend_on_how_the_data_is_streamed(name, digits_test):
    x = digits_test.x[: CHUNK + 20]
    whole = corrupt(x, name, 4, seed=1)
    first = get_corruption(name)(x[:CHUNK], 4, seed=1)
    rest = get_corruption(name)(x[CHUNK:], 4, seed=1, start=CHUNK)
    torch.testing.assert_close(torch.cat([first, rest]), whole, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="multiple of the chunk size"):
        get_corruption(name)(x[:3], 4, start=5)


def test_bad_inputs_and_severities_are_refused_with_the_fix():
    x = torch.rand(2, 3, 16, 16)
    for bad in (torch.rand(2, 2, 16, 16), torch.rand(2, 3, 7, 16), torch.rand(3, 16, 16), x.double().long()):
        with pytest.raises(DataError, match="1 or 3 channels|N x C x H x W"):
            corrupt(bad, "contrast", 1)
    for severity in (0, 6, True, 2.0):
        with pytest.raises(UsageError, match="integer from 1 to 5"):
            corrupt(x, "contrast", severity)


# -- the documented amounts ---------------------------------------------------------------------


def test_gaussian_noise_changes_32x32_inputs_by_the_benchmarks_standard_deviation():
    grey_mid = torch.full((8, 3, 32, 32), 0.5)  # far from the bounds: no clipping
    change = corrupt(grey_mid, "gaussian_noise", 3, seed=0) - grey_mid
    assert change.std().item() == pytest.approx(0.08, rel=0.02)
    assert abs(change.mean().item()) < 0.003
    large = torch.full((2, 3, 64, 64), 0.5)  # ImageNet-C: 0.18 at severity 3
    assert (corrupt(large, "gaussian_noise", 3) - large).std().item() == pytest.approx(0.18, rel=0.03)


def test_severities_share_their_draws_so_the_noise_grows_with_the_severity():
    x = torch.full((2, 3, 32, 32), 0.5)
    changes = [corrupt(x, "gaussian_noise", s, seed=0) - x for s in (1, 5)]
    torch.testing.assert_close(changes[0] / 0.04, changes[1] / 0.10, atol=1e-4, rtol=0)
    hit = [corrupt(x, "impulse_noise", s, seed=0) != x for s in (1, 2, 3, 4, 5)]
    assert all(bool((a <= b).all()) for a, b in zip(hit, hit[1:]))  # nested sets of pixels


def test_shot_noise_has_the_poisson_variance_and_exact_quantiles():
    x = torch.full((8, 3, 32, 32), 0.5)
    change = corrupt(x, "shot_noise", 3, seed=0) - x  # Poisson(100 x) / 100: variance x / 100
    assert change.var().item() == pytest.approx(0.5 / 100, rel=0.05)
    from scipy.stats import poisson

    g = torch.Generator().manual_seed(0)
    rate = torch.cat([torch.rand(3000, generator=g) * 3, torch.rand(3000, generator=g) * 500])
    u = torch.rand(6000, generator=g)
    expected = poisson.ppf(u.double().numpy(), rate.double().numpy())
    np.testing.assert_array_equal(poisson_quantile(rate, u).numpy(), expected)


def test_impulse_noise_replaces_the_documented_share_with_salt_and_pepper():
    x = torch.full((8, 3, 32, 32), 0.5)
    out = corrupt(x, "impulse_noise", 3, seed=0)  # 3% of the values
    changed = out != x
    assert changed.float().mean().item() == pytest.approx(0.03, abs=0.004)
    assert set(out[changed].unique().tolist()) == {0.0, 1.0}
    assert (out[changed] == 1).float().mean().item() == pytest.approx(0.5, abs=0.06)


def test_brightness_is_the_hsv_value_plus_c(rgb32):
    out = corrupt(rgb32, "brightness", 3)  # + 0.15 on V
    pixels = rgb32.permute(0, 2, 3, 1).reshape(-1, 3)[::97]
    got = out.permute(0, 2, 3, 1).reshape(-1, 3)[::97]
    for p, q in zip(pixels.tolist(), got.tolist()):
        h, s, v = colorsys.rgb_to_hsv(*p)
        assert q == pytest.approx(colorsys.hsv_to_rgb(h, s, min(v + 0.15, 1.0)), abs=1e-5)
    black = torch.zeros(1, 3, 8, 8)
    assert torch.allclose(corrupt(black, "brightness", 5), torch.full_like(black, 0.3))


def test_contrast_pulls_each_channel_to_its_mean(rgb32):
    mean = rgb32.mean(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(corrupt(rgb32, "contrast", 5), (rgb32 - mean) * 0.15 + mean)


def test_pixelate_is_pils_box_resize_down_and_up(rgb32):
    from PIL import Image

    out = corrupt(rgb32, "pixelate", 5)  # 32 -> int(32 * 0.65) = 20 -> 32
    for i in range(2):
        for ch in range(3):
            img = Image.fromarray(rgb32[i, ch].numpy(), mode="F")
            ref = np.asarray(img.resize((20, 20), Image.BOX).resize((32, 32), Image.BOX))
            np.testing.assert_allclose(out[i, ch].numpy(), ref, atol=1e-5)


def test_jpeg_is_close_to_pils_encoder_at_the_same_quality(rgb32):
    from PIL import Image

    x = torch.round(rgb32 * 255) / 255
    for quality in (80, 40):
        for grey in (False, True):
            images = x[:, :1] if grey else x
            ours = jpeg(images, quality)
            refs = []
            for i in range(images.shape[0]):
                arr = (images[i, 0] if grey else images[i].permute(1, 2, 0)).numpy()
                buf = io.BytesIO()
                Image.fromarray(np.round(arr * 255).astype(np.uint8)).save(buf, "JPEG", quality=quality)
                refs.append(np.asarray(Image.open(buf), dtype=np.float32) / 255)
            mine = ours[:, 0] if grey else ours.permute(0, 2, 3, 1)
            diff = np.abs(mine.numpy() - np.stack(refs)).mean()
            change = (ours - images).abs().mean().item()
            # libjpeg's integer DCT and chroma rounding differ by about a grey level (luma: a tenth).
            assert diff < (0.5 if grey else 2.0) / 255 and diff < change / 2, (quality, grey, diff, change)


def test_zoom_is_scipys_linear_zoom_and_blurs_keep_a_flat_image():
    from scipy.ndimage import zoom

    x = smooth_images(1, 1, 32)
    ch = 28  # ceil(32 / 1.15)
    ref = zoom(x[0, 0, 2:30, 2:30].double().numpy(), 32 / ch * 1.0, order=1)
    ours = clipped_zoom(x, 1.15)[0, 0]
    assert ours.shape == (32, 32)
    np.testing.assert_allclose(ours.numpy(), ref[:32, :32], atol=2e-6)
    flat = torch.full((2, 3, 32, 32), 0.4)
    for name in ("defocus_blur", "motion_blur", "zoom_blur", "elastic_transform"):
        torch.testing.assert_close(corrupt(flat, name, 5), flat, atol=1e-5, rtol=0)
    assert (corrupt(flat, "glass_blur", 5) - flat).abs().max() <= 1 / 255 + 1e-6  # stored as 8 bits


def test_defocus_uses_the_benchmarks_anti_aliased_disk():
    kernel = disk_kernel(1.0, 0.2, torch.device("cpu"))  # CIFAR-10-C severity 4: a 5-pixel disk
    assert kernel.sum().item() == pytest.approx(1.0) and kernel.shape == (5, 5)
    centre_cross = kernel[2, 2] + kernel[1, 2] + kernel[3, 2] + kernel[2, 1] + kernel[2, 3]
    assert centre_cross.item() == pytest.approx(1.0, abs=0.01)  # alias blur 0.2 barely spreads it
    assert kernel[2, 2].item() == pytest.approx(0.2, abs=0.01)


def test_weather_adds_light_and_fog_keeps_the_maximum(rgb32):
    snowy = corrupt(rgb32, "snow", 5, seed=0)
    assert (snowy >= rgb32 - 1e-6).all() and (snowy - rgb32).mean() > 0.05  # snow never darkens
    foggy = corrupt(rgb32, "fog", 5, seed=0)
    assert (foggy.amax(dim=(1, 2, 3)) <= rgb32.amax(dim=(1, 2, 3)) + 1e-6).all()
    # Frost is c0 x + c1 texture: the texture comes back out, one per image, ice-like statistics.
    dark = torch.full((4, 3, 32, 32), 0.1)
    texture = (corrupt(dark, "frost", 1, seed=0) - dark) / 0.2  # severity 1: (1, 0.2)
    assert 0.25 < texture.mean().item() < 0.55 and texture.std().item() > 0.1
    assert texture[:, 2].mean() > texture[:, 0].mean()  # pale blue
    assert not torch.allclose(texture[0], texture[1])


def test_grey_images_are_corrupted_like_rgb_images_with_equal_channels():
    x1 = smooth_images(3, 1, 16)
    x3 = x1.expand(-1, 3, -1, -1).contiguous()
    for name in (
        "brightness",
        "contrast",
        "pixelate",
        "defocus_blur",
        "zoom_blur",
        "jpeg_compression",
        "fog",
    ):
        one, three = corrupt(x1, name, 4), corrupt(x3, name, 4)
        tolerance = 1.5 / 255 if name == "jpeg_compression" else 1e-5  # the chroma planes round to +-1
        assert (three - one).abs().max() <= tolerance, name


# -- the accuracy table -------------------------------------------------------------------------


def test_accuracy_falls_weakly_with_severity_under_noise_on_the_demo_model(digits_model, digits_test):
    res = corruption_accuracy(
        digits_model, digits_test.x, digits_test.y, names=["gaussian_noise", "shot_noise", "impulse_noise"]
    )
    assert res["constants"] == "cifar10-c" and res["n"] == 359 and res["severities"] == [1, 2, 3, 4, 5]
    for row in res["corruptions"]:
        assert all(a >= b for a, b in zip(row["correct"], row["correct"][1:])), row
        assert row["correct"][0] <= round(res["clean_accuracy"] * 359) + 2
    impulse = res["corruptions"][2]["accuracy"]
    assert impulse[-1] < impulse[0] - 0.02  # 7% salt and pepper hurts an 8x8 digit
    cells = [a for row in res["corruptions"] for a in row["accuracy"]]
    assert res["mean_corruption_accuracy"] == pytest.approx(np.mean(cells))
    assert res["relative_drop"] == pytest.approx(1 - res["mean_corruption_accuracy"] / res["clean_accuracy"])
    low, high = res["mean_corruption_ci"]
    assert low < res["mean_corruption_accuracy"] < high
    ex = res["examples"]
    assert ex["names"] == ["clean", "gaussian_noise", "shot_noise", "impulse_noise"] and ex["severity"] == 3
    assert np.asarray(ex["images"]).shape == (4, 8, 8)  # grey: H x W each


# -- the commands -------------------------------------------------------------------------------


def test_corrupt_writes_data_every_command_reads(tmp_path, capsys):
    from robustness.core.data import load_data

    out = tmp_path / "noisy.npz"
    argv = ["corrupt", "--data", "builtin:digits", "--severity", "3", "--output", str(out)]
    assert main([*argv, "--corruption", "gaussian_noise", "--seed", "2", "--json", "--device", "cpu"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["n"] == 359 and info["constants"] == "cifar10-c" and info["shape"] == [1, 8, 8]
    written, clean = load_data(str(out)), load_data("builtin:digits")
    assert torch.equal(written.y, clean.y) and written.ids == clean.ids
    torch.testing.assert_close(written.x, corrupt(clean.x, "gaussian_noise", 3, seed=2))
    assert main([*argv, "--corruption", "gaussian_noize"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown corruption 'gaussian_noize'" in err and "gaussian_noise" in err


def test_corruptions_reports_the_table_on_the_zoo_model(capsys):
    argv = ["corruptions", "--model", "zoo:digits-cnn", "--data", "builtin:digits", "--device", "cpu"]
    assert main([*argv, "--corruption", "contrast", "--severity", "1", "--severity", "5", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["model"] == "zoo:digits-cnn" and res["severities"] == [1, 5] and "examples" not in res
    (row,) = res["corruptions"]
    assert row["name"] == "contrast" and row["accuracy"][1] < row["accuracy"][0]
    assert main([*argv, "--corruption", "brightness", "--n-examples", "50"]) == 0
    text = capsys.readouterr().out
    assert "brightness" in text and "mean corruption accuracy" in text and "relative drop" in text


@pytest.mark.gpu
@pytest.mark.parametrize("name", NAMES)
def test_every_corruption_runs_on_the_gpu_like_on_the_cpu(name, rgb32):
    x = rgb32.cuda()
    out = corrupt(x, name, 5, seed=3)
    assert out.device == x.device and out.shape == x.shape and 0 <= out.min() and out.max() <= 1
    assert torch.equal(out, corrupt(x, name, 5, seed=3))
    if name in FIXED:  # no draws: the same numbers as on the CPU
        torch.testing.assert_close(
            out.cpu(), corrupt(rgb32, name, 5), atol=2e-5 if name != "jpeg_compression" else 1 / 255, rtol=0
        )
    else:  # other draws, the same amount of change
        change = (out.cpu() - rgb32).abs().mean()
        assert change == pytest.approx((corrupt(rgb32, name, 5, seed=3) - rgb32).abs().mean(), rel=0.3)
