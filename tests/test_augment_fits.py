"""Augmentation settings that wipe the images out instead of varying them are refused before a run
(walk14 F10: datasets.md's CIFAR recipe, `cutout: 16`, on the 8x8 digits blanked every image and
trained on zeros without a word): a cutout that blanks every image whatever its centre, and a crop
padding that makes some crops nothing but padding."""

from __future__ import annotations

import pytest
import torch
from conftest import SPACES

from nasframe import UserError
from nasframe.augment import augment_batch, check_augment_fits
from nasframe.cli import main
from nasframe.config import AugmentConfig


def _aug(**kw) -> AugmentConfig:
    return AugmentConfig(**kw)


def test_a_cutout_that_blanks_every_image_is_refused_with_the_largest_harmless_side():
    with pytest.raises(UserError) as e:
        check_augment_fits(_aug(cutout=16), (1, 8, 8), "train.augment")
    assert str(e.value) == (
        "train.augment.cutout: a 16x16 cutout blanks every 8x8 image whatever its centre; use "
        "at most 7 (a larger side blanks some images whole; about half the image side, 4, is "
        "usual)"
    )
    with pytest.raises(UserError, match=r"^search\.augment\.cutout: a 15x15 cutout blanks"):
        check_augment_fits(_aug(cutout=15), (1, 8, 8), "search.augment")
    check_augment_fits(_aug(cutout=14), (1, 8, 8), "train.augment")  # not every image
    check_augment_fits(_aug(cutout=16, crop_padding=4, flip=True), (3, 32, 32), "train.augment")
    with pytest.raises(UserError, match=r"blanks every 8x5 image"):  # the longer side counts
        check_augment_fits(_aug(cutout=15), (1, 8, 5), "train.augment")
    check_augment_fits(_aug(cutout=14), (1, 8, 5), "train.augment")


def test_a_crop_padding_of_the_image_side_is_refused():
    with pytest.raises(UserError) as e:
        check_augment_fits(_aug(crop_padding=8), (1, 8, 8), "train.augment")
    assert str(e.value) == (
        "train.augment.crop_padding: 8 pixels of padding on 8x8 images make some crops nothing "
        "but padding; use at most 7 (an eighth of the image side, 1, is usual)"
    )
    with pytest.raises(UserError, match=r"use at most 4 "):  # the shorter side counts
        check_augment_fits(_aug(crop_padding=5), (3, 5, 9), "train.augment")
    check_augment_fits(_aug(crop_padding=7), (1, 8, 8), "train.augment")
    check_augment_fits(_aug(crop_padding=4, flip=True), (1, 8, 8), "train.augment")  # datasets.md


def test_no_augmentation_and_data_that_are_not_images_are_left_alone():
    check_augment_fits(None, (1, 8, 8), "train.augment")
    check_augment_fits(_aug(cutout=99), (40,), "train.augment")  # refused elsewhere, as not images
    check_augment_fits(_aug(), (1, 1, 1), "train.augment")


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 5, 8), (2, 7, 3), (1, 1, 1)])
def test_the_rules_are_exactly_where_augment_batch_blanks_images(shape):
    """Refused exactly where augment_batch blanks every image (cutout) or some (crop padding),
    over every centre and offset it can draw."""
    c, h, w = shape
    x = torch.ones(3000, c, h, w)
    for length in range(1, 2 * max(h, w) + 2):
        y = augment_batch(x, generator=torch.Generator().manual_seed(0), flip=False,
                          crop_padding=0, cutout=length)  # fmt: skip
        every_blank = bool((y.flatten(1) == 0).all())
        try:
            check_augment_fits(_aug(cutout=length), shape, "train.augment")
            refused = False
        except UserError:
            refused = True
        assert refused == every_blank, length
    for padding in range(1, 2 * max(h, w) + 2):
        y = augment_batch(x, generator=torch.Generator().manual_seed(0), flip=False,
                          crop_padding=padding, cutout=0)  # fmt: skip
        some_blank = bool((y.flatten(1) == 0).all(1).any())
        try:
            check_augment_fits(_aug(crop_padding=padding), shape, "train.augment")
            refused = False
        except UserError:
            refused = True
        assert refused == some_blank, padding


def test_validate_data_refuses_the_cifar_recipe_on_digits(tmp_path, capsys):
    """End to end: the search's dry run reports its ``sample_shape``, against which the
    retraining's augmentation is checked."""
    text = (SPACES / "digits.yaml").read_text()
    old = "train:\n  epochs: 10\n"
    assert old in text
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        text.replace(old, old + "  augment: {crop_padding: 4, flip: true, cutout: 16}\n")
    )
    rc = main(["validate", "--data", str(cfg)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert (
        err.strip()
        .splitlines()[-1]
        .endswith(
            "train.augment.cutout: a 16x16 cutout blanks every 8x8 image whatever its centre; use "
            "at most 7 (a larger side blanks some images whole; about half the image side, 4, is "
            "usual)"
        )
    )


def _digits_with(tmp_path, old: str, new: str):
    text = (SPACES / "digits.yaml").read_text()
    assert old in text
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text.replace(old, new))
    return cfg


def test_validate_data_checks_a_search_config_s_train_augment_for_the_retraining(
    tmp_path, capsys, monkeypatch
):
    """The search does not use train.augment, but `nasframe train` of what it finds will, on the
    same data: validate --data refuses it from the sample shape the dry run reports."""
    import nasframe.search

    def dry_run(config, run_dir, **kw):
        return {
            "kind": "search",
            "data": "digits",
            "train": 1,
            "valid": 1,
            "sample_shape": (1, 8, 8),
        }

    monkeypatch.setattr(nasframe.search, "run_search", dry_run)
    old = "train:\n  epochs: 10\n"
    cfg = _digits_with(tmp_path, old, old + "  augment: {cutout: 16}\n")
    assert main(["validate", "--data", str(cfg)]) == 2
    line = capsys.readouterr().err.strip()
    assert line.startswith(f"{cfg}:")
    assert ": train.augment.cutout: a 16x16 cutout blanks every 8x8 image" in line
    cfg = _digits_with(tmp_path, "search:\n", "search:\n  augment: {crop_padding: 8}\n")
    assert main(["validate", "--data", str(cfg)]) == 2
    assert (
        ": search.augment.crop_padding: 8 pixels of padding on 8x8 images"
        in capsys.readouterr().err
    )
    cfg = _digits_with(tmp_path, old, old + "  augment: {crop_padding: 4, flip: true}\n")
    assert main(["validate", "--data", str(cfg)]) == 0


@pytest.mark.parametrize("command", ["search", "train"])
def test_a_run_refuses_augmentation_that_blanks_its_images(tmp_path, capsys, command):
    section = "search" if command == "search" else "train"
    text = (SPACES / "digits.yaml").read_text()
    if command == "train":
        from nasframe import SearchSpace, load_config
        from nasframe.yaml_io import dump_yaml

        config, _ = load_config(SPACES / "digits.yaml")
        space = SearchSpace(config)
        dump_yaml(space.freeze([0] * len(space.paths)), tmp_path / "arch.yaml")
        text = (tmp_path / "arch.yaml").read_text()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    args = [command, str(cfg), "--out", str(tmp_path / "run"), "--quiet"]
    assert main([*args, "--set", f"{section}.augment={{cutout: 16}}"]) == 2
    assert f"{section}.augment.cutout: a 16x16 cutout blanks every 8x8 image" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "run").exists()
